using System.Diagnostics;
using System.Text.Json.Nodes;
using MiniGpt4.Bridge;
using MiniGpt4.Runtime;
using MiniGpt4.SyntheticWorld;
using MiniGpt4.Vision;
using MiniGpt4.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Training;

/// <summary>One step of a vision pretraining run.</summary>
/// <param name="Step">Steps done.</param>
/// <param name="TotalSteps">Steps of the run.</param>
/// <param name="Loss">The step's cross-entropy (mean over images and queries).</param>
/// <param name="StepsPerSecond">Steps per second so far.</param>
/// <param name="Remaining">Estimated time to the end.</param>
public sealed record VisionPretrainingProgress(int Step, int TotalSteps, double Loss, double StepsPerSecond, TimeSpan Remaining);

/// <summary>Accuracy of the query outputs on held-out images.</summary>
/// <param name="Images">Images evaluated.</param>
/// <param name="PerPosition">For each query, the share of images whose code word it predicts correctly.</param>
/// <param name="AllCorrect">The share of images whose whole code is predicted correctly.</param>
/// <param name="ObjectPatches">The share of patch tokens over an object whose colour and shape the patch head names correctly.</param>
public sealed record VisionEvaluation(int Images, IReadOnlyList<double> PerPosition, double AllCorrect, double ObjectPatches);

/// <summary>
/// Pretrains a small EVA-style vision tower, ln_vision and a Q-Former (the inference library's own modules) from
/// scratch on synthetic-world images, with TorchSharp autograd: each of the Q-Former's query outputs is classified
/// (by a linear head that is thrown away) into the scene code's word at its position (count, the colour-and-
/// shape slots, background), and each of the tower's patch tokens (by another such head) into what lies under it. Images come through the inference preprocessing. <see cref="Save"/> writes the
/// weights in the release layouts the loader reads: <c>eva_vit_g.pth</c> (a plain state dict) and
/// <c>blip2_pretrained_flant5xxl.pth</c> (<c>{"model": {query_tokens, Qformer.bert.*, ln_vision.*}}</c>) plus the
/// Q-Former's BERT <c>config.json</c>. Not thread-safe.
/// </summary>
public sealed class VisionPretrainer : IDisposable
{
    /// <summary>The vision tower's file in a model folder.</summary>
    public const string VisionFileName = "eva_vit_g.pth";

    /// <summary>The Q-Former's file (with ln_vision and the query tokens) in a model folder.</summary>
    public const string QFormerFileName = "blip2_pretrained_flant5xxl.pth";

    /// <summary>The Q-Former's BERT configuration in a model folder.</summary>
    public const string QFormerConfigFileName = "qformer_config.json";

    /// <summary>Query tokens (the scene code's length).</summary>
    public const int Queries = SceneCode.Length;

    private readonly EvaVisionTransformer _vit;
    private readonly QFormerProjector _qformer;
    private readonly Linear _head;
    private readonly Linear _patchHead;
    private readonly Linear _centreHead;
    private readonly QFormerConfig _qconfig;
    private bool _disposed;

    /// <summary>Builds the modules with freshly initialised weights (seeded by <see cref="VisionPretrainingOptions.Seed"/>).</summary>
    /// <exception cref="MiniGptConfigurationException">Options that cannot describe the modules.</exception>
    public VisionPretrainer(VisionPretrainingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        Options = options;
        var vconfig = new VisionConfig(options.ImageSize, options.PatchSize, options.Width, options.Depth, options.Heads, options.MlpHidden).Validate();
        _qconfig = new QFormerConfig(options.QFormerHidden, options.QFormerLayers, options.QFormerHeads, options.QFormerIntermediate,
            options.CrossAttentionFreq, NumQueryTokens: Queries, EncoderWidth: options.Width).Validate();
        random.manual_seed(options.Seed);
        _vit = new EvaVisionTransformer(vconfig, ScalarType.Float32, CPU);
        _qformer = new QFormerProjector(_qconfig, outputDim: 1, ScalarType.Float32, CPU);
        _head = nn.Linear(options.QFormerHidden, SceneTargets.Classes.Count);
        _patchHead = nn.Linear(options.Width, SceneTargets.PatchClasses);
        _centreHead = nn.Linear(options.Width, 2);
        Initialise();
    }

    /// <summary>The run's options.</summary>
    public VisionPretrainingOptions Options { get; }

    /// <summary>The trained parameters with their weight decay (llama_proj is not trained here).</summary>
    private List<(string Name, Tensor Parameter, double WeightDecay)> Trained()
    {
        var list = new List<(string, Tensor, double)>();
        void Add(string prefix, IEnumerable<(string name, Parameter parameter)> ps)
        {
            foreach (var (name, p) in ps)
            {
                if (name.StartsWith("llama_proj.", StringComparison.Ordinal)) continue;
                list.Add((prefix + name, p, p.dim() >= 2 && name != "pos_embed" && name != "cls_token" && name != "query_tokens" ? Options.WeightDecay : 0));
            }
        }
        Add("vit.", _vit.named_parameters());
        Add("qformer.", _qformer.named_parameters());
        Add("head.", _head.named_parameters());
        Add("patch_head.", _patchHead.named_parameters());
        Add("centre_head.", _centreHead.named_parameters());
        return list;
    }

    private void Initialise()
    {
        using var noGrad = no_grad();
        using Scalar low = -0.04, high = 0.04;
        foreach (var (name, p, _) in Trained())
        {
            var leaf = name[(name.LastIndexOf('.') + 1)..];
            var isNorm = name.Contains("norm", StringComparison.OrdinalIgnoreCase) || name.Contains("ln_vision", StringComparison.Ordinal);
            if (isNorm && leaf == "weight") p.fill_(TensorMath.One);
            else if (leaf is "bias" or "q_bias" or "v_bias") p.zero_();
            else nn.init.normal_(p, 0, 0.02).clamp_(low, high); // truncated normal (TorchSharp's trunc_normal_ filled a constant here)
            p.requires_grad = true;
        }
    }

    /// <summary>Trains for <see cref="VisionPretrainingOptions.Steps"/> steps on fresh images of world seed <see cref="VisionPretrainingOptions.Seed"/>; returns the last step's loss.</summary>
    /// <exception cref="OperationCanceledException">Cancelled between steps.</exception>
    /// <exception cref="MiniGptNumericsException">The loss became NaN or infinite.</exception>
    public double Train(IProgress<VisionPretrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        TorchThreads.Pin(Options.Threads);
        var o = Options;
        var parameters = Trained();
        using var adam = new AdamW(parameters, 0.9, 0.999, 1e-8);
        var warmup = o.WarmupSteps ?? Math.Max(1, o.Steps / 20);
        var clock = Stopwatch.StartNew();
        var loss = double.NaN;
        var next = Task.Run(() => WorldImages.Batch(o.Seed, 0, o.BatchSize, o.ImageSize, Grid), cancellationToken);
        _vit.train();
        _qformer.train();
        for (var step = 0; step < o.Steps; step++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (pixels, labels, patches, centres) = next.GetAwaiter().GetResult();
            var first = (long)(step + 1) * o.BatchSize;
            if (step + 1 < o.Steps) next = Task.Run(() => WorldImages.Batch(o.Seed, first, o.BatchSize, o.ImageSize, Grid), cancellationToken);
            var lr = LearningRateSchedule.At(step, o.Steps, warmup, o.LearningRate / 100, o.LearningRate, o.LearningRate / 10);
            using (var scope = NewDisposeScope())
            {
                var lossTensor = Loss(pixels, labels, patches, centres, o.BatchSize);
                loss = lossTensor.ToDouble();
                if (!double.IsFinite(loss)) throw new MiniGptNumericsException($"The vision pretraining loss is {loss} at step {step + 1}.", step + 1);
                lossTensor.backward();
            }
            adam.Step(lr);
            var done = step + 1;
            var rate = done / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            progress?.Report(new VisionPretrainingProgress(done, o.Steps, loss, rate, TimeSpan.FromSeconds((o.Steps - done) / rate)));
        }
        _vit.eval();
        _qformer.eval();
        return loss;
    }

    /// <summary>Patches per side of the model input.</summary>
    private int Grid => Options.ImageSize / Options.PatchSize;

    /// <summary>
    /// The loss of one batch (a tensor in the caller's dispose scope): the mean cross-entropy of the query classes plus,
    /// weighted by <see cref="VisionPretrainingOptions.PatchLossWeight"/>, those of the patch classes and of the
    /// object-centre flags. The patch terms tell every patch token what lies under it and whether an object's centre
    /// does, dense signals for what the 32 query answers need: shapes, and a count that attention pooling can sum.
    /// </summary>
    private Tensor Loss(float[] pixels, long[] labels, long[] patches, long[] centres, int count)
    {
        var (tokens, logits) = Forward(pixels, count);
        var loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[2]), tensor(labels, [labels.Length]));
        if (Options.PatchLossWeight == 0) return loss;
        var patchTokens = PatchTokens(tokens);
        var patchLogits = _patchHead.call(patchTokens);
        var patchLoss = nn.functional.cross_entropy(patchLogits.reshape(-1, patchLogits.shape[2]), tensor(patches, [patches.Length]));
        var centreLogits = _centreHead.call(patchTokens);
        var centreLoss = nn.functional.cross_entropy(centreLogits.reshape(-1, 2), tensor(centres, [centres.Length]));
        // Explicit scalars kept alive for the call: an implicit one can be collected while native code reads it (docs/architecture.md).
        using var weight = Options.PatchLossWeight.ToScalar();
        return loss.add(patchLoss.Plus(centreLoss), weight);
    }

    /// <summary>The tower's tokens <c>[count, 1 + patches, width]</c> and the query-class logits <c>[count, 32, classes]</c> of <paramref name="count"/> images.</summary>
    private (Tensor Tokens, Tensor QueryLogits) Forward(float[] pixels, int count)
    {
        var tokens = _vit.call(tensor(pixels, [count, 3, Options.ImageSize, Options.ImageSize]));
        return (tokens, _head.call(_qformer.ProjectionInput(tokens)));
    }

    /// <summary>The patch tokens: the tower's tokens without the class token.</summary>
    private static Tensor PatchTokens(Tensor tokens) => tokens.narrow(1, 1, tokens.shape[1] - 1);

    /// <summary>The loss on the first <paramref name="count"/> images of world <paramref name="seed"/>, without training (for tests).</summary>
    public double LossOn(long seed, int count)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var (pixels, labels, patches, centres) = WorldImages.Batch(seed, 0, count, Options.ImageSize, Grid);
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        return Loss(pixels, labels, patches, centres, count).ToDouble();
    }

    /// <summary>Per-query accuracy on the first <paramref name="count"/> images of world <paramref name="seed"/> (use a seed not trained on).</summary>
    public VisionEvaluation Evaluate(long seed, int count, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        const int chunk = 32;
        var correct = new long[Queries];
        long allCorrect = 0, objectPatches = 0, objectPatchesRight = 0;
        for (var start = 0; start < count; start += chunk)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var n = Math.Min(chunk, count - start);
            var (pixels, labels, patches, _) = WorldImages.Batch(seed, start, n, Options.ImageSize, Grid);
            using var noGrad = no_grad();
            using var scope = NewDisposeScope();
            var (tokens, logits) = Forward(pixels, n);
            var predicted = logits.argmax(2).data<long>().ToArray();
            var patchPredicted = _patchHead.call(PatchTokens(tokens)).argmax(2).data<long>().ToArray();
            for (var j = 0; j < patches.Length; j++)
            {
                if (patches[j] == SceneCode.ComboCount) continue;
                objectPatches++;
                if (patchPredicted[j] == patches[j]) objectPatchesRight++;
            }
            for (var i = 0; i < n; i++)
            {
                var all = true;
                for (var q = 0; q < Queries; q++)
                {
                    var ok = predicted[i * Queries + q] == labels[i * Queries + q];
                    if (ok) correct[q]++;
                    all &= ok;
                }
                if (all) allCorrect++;
            }
        }
        return new VisionEvaluation(count, correct.Select(c => (double)c / count).ToArray(), (double)allCorrect / count,
            (double)objectPatchesRight / Math.Max(1, objectPatches));
    }

    /// <summary>
    /// The Q-Former's outputs <c>[count * 32, hidden]</c> (what <c>llama_proj</c> receives) and the scene-code word of
    /// each row, for the first <paramref name="count"/> images of world <paramref name="seed"/>.
    /// </summary>
    internal (Tensor Features, string[] Words) QueryFeatures(long seed, int count)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        const int chunk = 32;
        var parts = new List<Tensor>();
        var words = new List<string>();
        try
        {
            for (var start = 0; start < count; start += chunk)
            {
                var n = Math.Min(chunk, count - start);
                var (pixels, labels, _, _) = WorldImages.Batch(seed, start, n, Options.ImageSize, Grid);
                using var noGrad = no_grad();
                using var scope = NewDisposeScope();
                var x = tensor(pixels, [n, 3, Options.ImageSize, Options.ImageSize]);
                parts.Add(_qformer.ProjectionInput(_vit.call(x)).reshape(n * Queries, -1).MoveToOuterDisposeScope());
                words.AddRange(labels.Select(l => SceneTargets.Classes[(int)l]));
            }
            return (cat(parts, 0), words.ToArray());
        }
        finally
        {
            foreach (var t in parts) t.Dispose();
        }
    }

    /// <summary>
    /// Writes the vision tower (<see cref="VisionFileName"/>), ln_vision, the query tokens and the Q-Former
    /// (<see cref="QFormerFileName"/>) and the Q-Former's BERT configuration (<see cref="QFormerConfigFileName"/>) into
    /// <paramref name="folder"/>; returns the manifest's <c>vision</c> and <c>qformer</c> sections for them.
    /// </summary>
    public JsonObject Save(string folder)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        Directory.CreateDirectory(folder);
        using (var scope = NewDisposeScope())
        {
            TorchCheckpointWriter.Write(Path.Combine(folder, VisionFileName),
                _vit.state_dict().Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value.detach())).ToList(), underModelKey: false);
            TorchCheckpointWriter.Write(Path.Combine(folder, QFormerFileName),
                _qformer.state_dict().Where(kv => !kv.Key.StartsWith("llama_proj.", StringComparison.Ordinal))
                    .Select(kv => new KeyValuePair<string, Tensor>(kv.Key, kv.Value.detach())).ToList(), underModelKey: true);
        }
        var o = Options;
        var bert = new JsonObject
        {
            ["hidden_size"] = o.QFormerHidden, ["num_hidden_layers"] = o.QFormerLayers, ["num_attention_heads"] = o.QFormerHeads,
            ["intermediate_size"] = o.QFormerIntermediate, ["cross_attention_freq"] = o.CrossAttentionFreq, ["layer_norm_eps"] = _qconfig.Eps,
            ["hidden_act"] = "gelu", ["encoder_width"] = o.Width, ["query_length"] = Queries,
        };
        File.WriteAllText(Path.Combine(folder, QFormerConfigFileName), bert.ToJsonString(new() { WriteIndented = true }) + "\n");
        return new JsonObject
        {
            ["vision"] = new JsonObject
            {
                ["checkpoint"] = VisionFileName, ["image_size"] = o.ImageSize, ["patch_size"] = o.PatchSize,
                ["width"] = o.Width, ["depth"] = o.Depth, ["heads"] = o.Heads, ["mlp_hidden"] = o.MlpHidden,
            },
            ["qformer"] = new JsonObject { ["checkpoint"] = QFormerFileName, ["config"] = QFormerConfigFileName, ["num_query_tokens"] = Queries },
        };
    }

    /// <summary>Frees the modules.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _vit.Dispose();
        _qformer.Dispose();
        _head.Dispose();
        _patchHead.Dispose();
        _centreHead.Dispose();
    }
}
