using System.Diagnostics;
using System.Text.Json.Nodes;
using MiniGpt4.Abstractions;
using MiniGpt4.Language;
using MiniGpt4.Models;
using MiniGpt4.Runtime;
using MiniGpt4.SyntheticWorld;
using MiniGpt4.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Training;

/// <summary>
/// Pretrains the toy model's language model from scratch on the synthetic world's text (docs/toy-model.md): builds
/// its tokenizer (<see cref="ToyTokenizer"/>), creates a small <c>LlamaForCausalLM</c> with the engine's own modules,
/// trains every weight with AdamW on sequences laid out exactly as projection training and inference lay them out,
/// with the scene code's 32 word tokens in the image slot (<see cref="SceneCode"/>), and writes a Hugging Face LLaMA
/// folder (<c>config.json</c>, <c>model.safetensors</c>, <c>tokenizer.model</c>) that the engine's loader reads as a
/// language model. The loss is next-token cross-entropy on the caption or answer tokens only (their end symbol
/// included), as in projection training. Seeded: the same options give the same weights on the same machine and thread count.
/// </summary>
public static class LanguagePretrainer
{
    /// <summary>The weight file in the written folder.</summary>
    public const string WeightsFileName = "model.safetensors";

    /// <summary>The configuration file in the written folder.</summary>
    public const string ConfigFileName = "config.json";

    /// <summary>The world seed held-out evaluation uses by default (never a training seed of the defaults).</summary>
    public const long HeldOutWorldSeed = 7_000_013;

    /// <summary>Answers longer than this many tokens are cut (the longest reference answer is about 25).</summary>
    public const int MaxAnswerTokens = 48;

    /// <summary>
    /// Trains a language model with <paramref name="options"/> and writes it to <paramref name="outputDirectory"/>.
    /// Each step is reported to <paramref name="progress"/> on the training thread.
    /// </summary>
    /// <exception cref="MiniGptConfigurationException">Bad options.</exception>
    /// <exception cref="MiniGptNumericsException">The loss is not finite.</exception>
    /// <exception cref="OperationCanceledException">Cancelled between steps; the folder keeps the last saved state for resuming.</exception>
    public static Task<LanguagePretrainingResult> TrainAsync(string outputDirectory, LanguagePretrainingOptions options,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
        => TrainAsync(outputDirectory, options, resume: false, progress, cancellationToken);

    /// <summary>
    /// Like <see cref="TrainAsync(string, LanguagePretrainingOptions, IProgress{TrainingProgress}?, CancellationToken)"/>; with
    /// <paramref name="resume"/>, continues the run saved in <paramref name="outputDirectory"/> (every
    /// <see cref="LanguagePretrainingOptions.CheckpointEvery"/> steps) with the same options, exactly as an uninterrupted run
    /// would have gone on. The result's time is the whole run's, earlier sessions included.
    /// </summary>
    /// <exception cref="MiniGptConfigurationException">Bad options, or no saved state from the same options to resume.</exception>
    public static Task<LanguagePretrainingResult> TrainAsync(string outputDirectory, LanguagePretrainingOptions options, bool resume,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(outputDirectory);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        return Task.Run(() => Train(outputDirectory, options, resume, progress, cancellationToken), cancellationToken);
    }

    /// <summary>
    /// Loads the language model folder <paramref name="languageModelDirectory"/> through the engine's loader in
    /// <paramref name="dtype"/> and answers every question the world allows about <paramref name="scenes"/> scenes of
    /// <paramref name="worldSeed"/>, fed the true scene code in the image slot of the vicuna0 prompt, greedily, through the
    /// engine's decoding session; each answer is judged by <see cref="AnswerChecker"/> (and given to <paramref name="onAnswer"/>
    /// with its question). Returns the score per kind.
    /// </summary>
    public static Task<IReadOnlyDictionary<QuestionKind, KindScore>> EvaluateAsync(string languageModelDirectory, long worldSeed = HeldOutWorldSeed,
        int scenes = 200, MiniGptDType dtype = MiniGptDType.BFloat16, IProgress<int>? progress = null, CancellationToken cancellationToken = default,
        Action<WorldQuestion, string>? onAnswer = null)
    {
        ArgumentNullException.ThrowIfNull(languageModelDirectory);
        ArgumentOutOfRangeException.ThrowIfNegative(scenes);
        return Task.Run(() =>
        {
            var parts = ModelLoader.Load(ModelManifest.Load(languageModelDirectory), new MiniGptLoadOptions { DType = dtype }, null, cancellationToken);
            using var lm = parts.LanguageModel;
            return Evaluate(lm, worldSeed, scenes, progress, cancellationToken, onAnswer);
        }, cancellationToken);
    }

    /// <summary>
    /// The token id of each scene-code word (<see cref="SceneCode.Vocabulary"/> order) in the tokenizer of
    /// <paramref name="languageModelDirectory"/>: the rows of the embedding matrix a projection imitates.
    /// </summary>
    public static IReadOnlyList<int> CodeWordTokenIds(string languageModelDirectory)
    {
        var tokenizer = LlamaTextTokenizer.FromDirectory(languageModelDirectory);
        return SceneCode.Vocabulary.Select(w =>
        {
            var ids = tokenizer.Encode(w, addBos: false);
            return ids.Count == 1 ? ids[0] : throw new MiniGptConfigurationException($"The scene-code word '{w}' is not one token of '{languageModelDirectory}'.");
        }).ToArray();
    }

    private static LanguagePretrainingResult Train(string dir, LanguagePretrainingOptions o, bool resume, IProgress<TrainingProgress>? progress, CancellationToken ct)
    {
        NativeRuntime.EnsureLoaded();
        TorchThreads.Pin(o.Threads);
        var clock = Stopwatch.StartNew();
        Directory.CreateDirectory(dir);
        var tokenizerPath = Path.Combine(dir, ToyTokenizer.FileName);
        ToyTokenizer.Write(tokenizerPath);
        var tokenizer = LlamaTextTokenizer.FromFile(tokenizerPath, padToken: "$$");
        var config = new LlamaConfig(HiddenSize: o.HiddenSize, IntermediateSize: o.IntermediateSize, NumHiddenLayers: o.Layers,
            NumAttentionHeads: o.Heads, NumKeyValueHeads: o.Heads, RmsNormEps: 1e-6, RopeTheta: 10000.0, MaxPositionEmbeddings: o.MaxPositions,
            VocabSize: tokenizer.VocabSize, TieWordEmbeddings: false, BosTokenId: tokenizer.BosId, EosTokenId: tokenizer.EosId).Validate();
        using var lm = new LlamaLanguageModel(new LlamaForCausalLM(config, ScalarType.Float32, CPU), tokenizer, o.MaxPositions);
        var llm = lm.Model;
        var corpus = new LanguageCorpus(lm, o.WorldSeed, o.CaptionShare);
        var parameters = Initialise(llm, o);
        using var adam = new AdamW(parameters.Select(p => (p.Name, (Tensor)p.Parameter, p.Parameter.dim() == 2 ? o.WeightDecay : 0.0)).ToArray(), 0.9, 0.98, 1e-8);
        var (start, earlier) = resume ? PretrainerState.Restore(dir, o, parameters, adam) : (0, TimeSpan.Zero);
        var loss = double.NaN;
        for (var step = start; step < o.Steps; step++)
        {
            // The noise of a step depends only on the seed and the step, so that a resumed run goes on as an uninterrupted one.
            using var noise = new Generator(unchecked((ulong)o.Seed * 1_000_003UL + (ulong)step));
            ct.ThrowIfCancellationRequested();
            var lr = LearningRateSchedule.At(step, o.Steps, o.WarmupSteps, 0, o.LearningRate, o.MinLearningRate);
            var batch = Enumerable.Range(0, o.BatchSize).Select(j => corpus.Item((long)step * o.BatchSize + j)).ToArray();
            using (var scope = NewDisposeScope())
            {
                var lossTensor = Loss(llm, batch, corpus.CodeWordParts, o.ImageSlotNoise, noise);
                loss = lossTensor.ToDouble();
                if (!double.IsFinite(loss)) throw new MiniGptNumericsException($"The loss is {loss} at step {step + 1}.", step + 1);
                lossTensor.backward();
                nn.utils.clip_grad_norm_(parameters.Select(p => p.Parameter), o.GradientClip);
            }
            adam.Step(lr);
            var done = step + 1;
            if (done % o.CheckpointEvery == 0 && done < o.Steps) PretrainerState.Save(dir, o, parameters, adam, earlier + clock.Elapsed);
            var rate = (done - start) / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            progress?.Report(new TrainingProgress(done, o.Steps, loss, lr, rate, TimeSpan.FromSeconds((o.Steps - done) / rate)));
        }
        FoldCodeWordParts(llm, corpus.CodeWordParts);
        Save(dir, llm, config, o.SaveBFloat16);
        // The finished folder is what gets bundled: the resumable state (float32 weights and moments, ~6x the model) goes.
        PretrainerState.Delete(dir);
        return new LanguagePretrainingResult(dir, Math.Max(start, o.Steps), loss, earlier + clock.Elapsed);
    }

    /// <summary>
    /// GPT-2's initialisation: every matrix N(0, 0.02), the output projections of attention and MLP scaled by
    /// 1/sqrt(2 layers), the norms one; all trainable.
    /// </summary>
    private static List<(string Name, TorchSharp.Modules.Parameter Parameter)> Initialise(LlamaForCausalLM llm, LanguagePretrainingOptions o)
    {
        using var gen = new Generator((ulong)o.Seed);
        var list = new List<(string, TorchSharp.Modules.Parameter)>();
        using (no_grad())
        {
            foreach (var (name, p) in llm.named_parameters())
            {
                if (p.dim() == 1) p.fill_(TensorMath.One);
                else
                {
                    var std = name.EndsWith("o_proj.weight", StringComparison.Ordinal) || name.EndsWith("down_proj.weight", StringComparison.Ordinal)
                        ? 0.02 / Math.Sqrt(2.0 * o.Layers) : 0.02;
                    p.normal_(0, std, gen);
                }
                p.requires_grad = true;
                list.Add((name, p));
            }
        }
        return list;
    }

    /// <summary>
    /// Mean next-token cross-entropy over the batch's target tokens. A combination code word's embedding is its own row
    /// plus its colour word's and shape word's rows (<see cref="LanguageCorpus.CodeWordParts"/>; folded into its row at the
    /// end by <see cref="FoldCodeWordParts"/>); the image slot's embeddings get the noise.
    /// </summary>
    internal static Tensor Loss(LlamaForCausalLM llm, IReadOnlyList<CorpusSequence> batch, IReadOnlyDictionary<int, (int Colour, int Shape)> parts,
        double imageNoise, Generator noise)
    {
        var t = batch.Max(s => s.Ids.Length);
        var b = batch.Count;
        var ids = new long[b * t];
        var labels = new long[b * t];
        var real = new long[b * t];
        var slot = new float[b * t];
        Array.Fill(labels, -100L);
        for (var i = 0; i < b; i++)
        {
            var s = batch[i];
            for (var k = 0; k < s.Ids.Length; k++)
            {
                ids[i * t + k] = s.Ids[k];
                real[i * t + k] = 1;
                if (s.IsTarget[k]) labels[i * t + k] = s.Ids[k];
            }
            for (var k = 0; k < SceneCode.Length; k++) slot[i * t + s.ImageStart + k] = 1;
        }
        var colourIds = new long[b * t];
        var shapeIds = new long[b * t];
        var composed = new float[b * t];
        for (var k = 0; k < ids.Length; k++)
            if (parts.TryGetValue((int)ids[k], out var part))
                (colourIds[k], shapeIds[k], composed[k]) = (part.Colour, part.Shape, 1);
        var embeds = llm.Model.EmbedTokens.call(tensor(ids, [b, t]));
        if (composed.Any(c => c != 0))
        {
            var words = llm.Model.EmbedTokens.call(tensor(colourIds, [b, t])).Plus(llm.Model.EmbedTokens.call(tensor(shapeIds, [b, t])));
            embeds = embeds.Plus(words.mul(tensor(composed, [b, t, 1])));
        }
        if (imageNoise > 0)
        {
            using var rms = embeds.detach().Squared().mean().sqrt();
            using var scale = (rms.ToDouble() * imageNoise).ToScalar();
            var n = randn([b, t, llm.Config.HiddenSize], generator: noise).mul_(scale).mul_(tensor(slot, [b, t, 1]));
            embeds = embeds.Plus(n);
        }
        var mask = real.All(v => v == 1) ? null : tensor(real, [b, t]);
        var logits = llm.Forward(embeds, mask);
        var vocab = logits.shape[2];
        var predicted = logits.narrow(1, 0, t - 1).reshape(-1, vocab);
        var target = tensor(labels, [b, t]).narrow(1, 1, t - 1).reshape(-1);
        return nn.functional.cross_entropy(predicted, target, ignore_index: -100);
    }

    /// <summary>Adds each combination code word's colour and shape rows to its own row: the embedding <see cref="Loss"/> composed, now in the table.</summary>
    private static void FoldCodeWordParts(LlamaForCausalLM llm, IReadOnlyDictionary<int, (int Colour, int Shape)> parts)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var table = llm.Model.EmbedTokens.Weight;
        var rows = parts.Keys.Select(k => (long)k).ToArray();
        var sum = table.index_select(0, tensor(parts.Values.Select(p => (long)p.Colour).ToArray()))
            .Plus(table.index_select(0, tensor(parts.Values.Select(p => (long)p.Shape).ToArray())));
        table.index_add_(0, tensor(rows), sum, TensorMath.One);
    }

    private static void Save(string dir, LlamaForCausalLM llm, LlamaConfig c, bool bf16)
    {
        var dtype = bf16 ? ScalarType.BFloat16 : ScalarType.Float32;
        using (var scope = NewDisposeScope())
        using (no_grad())
        {
            var tensors = llm.named_parameters().Select(p => new KeyValuePair<string, Tensor>(p.name, p.parameter.detach().to(dtype).contiguous())).ToArray();
            Weights.SafetensorsWriter.Write(Path.Combine(dir, WeightsFileName), tensors);
        }
        var json = new JsonObject
        {
            ["architectures"] = new JsonArray("LlamaForCausalLM"),
            ["model_type"] = "llama",
            ["hidden_act"] = "silu",
            ["hidden_size"] = c.HiddenSize,
            ["intermediate_size"] = c.IntermediateSize,
            ["num_hidden_layers"] = c.NumHiddenLayers,
            ["num_attention_heads"] = c.NumAttentionHeads,
            ["num_key_value_heads"] = c.NumKeyValueHeads,
            ["max_position_embeddings"] = c.MaxPositionEmbeddings,
            ["vocab_size"] = c.VocabSize,
            ["rms_norm_eps"] = c.RmsNormEps,
            ["rope_theta"] = c.RopeTheta,
            ["tie_word_embeddings"] = false,
            ["bos_token_id"] = c.BosTokenId,
            ["eos_token_id"] = c.EosTokenId,
            ["torch_dtype"] = bf16 ? "bfloat16" : "float32",
        };
        File.WriteAllText(Path.Combine(dir, ConfigFileName), json.ToJsonString(new System.Text.Json.JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>Greedy answers to every allowed question of <paramref name="scenes"/> scenes, judged per kind.</summary>
    internal static IReadOnlyDictionary<QuestionKind, KindScore> Evaluate(LlamaLanguageModel lm, long worldSeed, int scenes, IProgress<int>? progress, CancellationToken ct,
        Action<WorldQuestion, string>? onAnswer = null)
    {
        var corpus = new LanguageCorpus(lm, worldSeed, 0);
        var scores = Enum.GetValues<QuestionKind>().ToDictionary(k => k, _ => (Correct: 0, Total: 0));
        for (var i = 0; i < scenes; i++)
        {
            ct.ThrowIfCancellationRequested();
            var scene = SceneGenerator.Generate(worldSeed, i);
            foreach (var q in QuestionGenerator.All(scene))
            {
                var answer = Answer(lm, corpus.Prompt(scene, q));
                onAnswer?.Invoke(q, answer);
                var (c, n) = scores[q.Kind];
                scores[q.Kind] = (c + (AnswerChecker.IsCorrect(q.Kind, q.Facts, answer) ? 1 : 0), n + 1);
            }
            progress?.Report(i + 1);
        }
        return scores.ToDictionary(kv => kv.Key, kv => new KindScore(kv.Value.Correct, kv.Value.Total));
    }

    /// <summary>The greedy answer to a prompt through a decoding session, cut at the separator <c>###</c>.</summary>
    internal static string Answer(LlamaLanguageModel lm, IReadOnlyList<int> prompt)
    {
        var model = lm.Model;
        using var session = model.CreateSession(prompt.Count + MaxAnswerTokens + 1);
        var logits = new float[model.Config.VocabSize];
        using (var first = session.PrefillTokens(prompt.ToArray()))
            first.data<float>().CopyTo(logits);
        var generated = new List<int>();
        var text = "";
        for (var k = 0; k < MaxAnswerTokens; k++)
        {
            var next = ArgMax(logits);
            if (next == lm.EndOfSequenceId) break;
            generated.Add(next);
            text = lm.Detokenize(generated);
            if (text.Contains("###", StringComparison.Ordinal)) break;
            session.Step([next], logits);
        }
        var cut = text.IndexOf("###", StringComparison.Ordinal);
        return (cut >= 0 ? text[..cut] : text).Trim();
    }

    private static int ArgMax(ReadOnlySpan<float> v)
    {
        var best = 0;
        for (var i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }
}
