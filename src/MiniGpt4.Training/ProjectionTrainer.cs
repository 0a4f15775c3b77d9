using System.Diagnostics;
using MiniGpt4.Abstractions;
using MiniGpt4.Bridge;
using MiniGpt4.Language;
using MiniGpt4.Models;
using MiniGpt4.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Training;

/// <summary>
/// Trains the projection (<c>llama_proj</c>: weight and bias) of a MiniGPT-4 model with the vision tower, the
/// Q-Former and the language model frozen, with the reference's objective: next-token cross-entropy on the answer
/// tokens only (mean over the batch's target tokens), the image embeddings spliced into the prompt the engine builds
/// at inference (docs/training.md). Writes a checkpoint in the release layout (<c>llama_proj.pth</c> holding
/// <c>{"model": {"llama_proj.weight", "llama_proj.bias"}}</c>) and a manifest beside it that
/// <see cref="MiniGptPipeline.LoadAsync(string, MiniGptLoadOptions?, IProgress{MiniGptProgress}?, CancellationToken)"/>
/// reads unchanged, plus the optimizer state and step for <c>resume</c>. Seeded and deterministic: a resumed run
/// continues exactly as an uninterrupted one. One run at a time; not thread-safe: cancel and await a run before disposing.
/// </summary>
public sealed class ProjectionTrainer : IDisposable
{
    /// <summary>The checkpoint file a run writes in its output folder.</summary>
    public const string CheckpointFileName = "llama_proj.pth";

    /// <summary>The manifest a run writes beside the checkpoint.</summary>
    public const string ManifestFileName = "minigpt4.json";

    internal const string StateFileName = "trainer-state.safetensors";
    internal const string StepFileName = "trainer-state.json";
    private const string WeightKey = "llama_proj.weight", BiasKey = "llama_proj.bias";

    private readonly ModelManifest _manifest;
    private readonly ModelPreset _preset;
    private readonly LoadedModel _parts;
    private readonly EvaVisionEncoder _vision;
    private readonly ProjectorModule _projector;
    private readonly LlamaForCausalLM _llm;
    private readonly ExampleLayout _layout;
    private readonly Tensor _initialWeight, _initialBias;
    private readonly Dictionary<string, Tensor> _projectionInputs = new(StringComparer.Ordinal);
    private bool _disposed;

    private ProjectionTrainer(ModelManifest manifest, ProjectionTrainingOptions options, ScalarType dtype, IProgress<MiniGptProgress>? progress, CancellationToken ct)
    {
        options.Validate();
        if (manifest.IsLanguageModelOnly) throw new MiniGptConfigurationException($"{manifest.SourceName ?? "The manifest"} describes a language model only: there is no projection to train.");
        if (manifest.Variant == ModelVariant.MiniGptV2)
            throw new MiniGptConfigurationException("Training MiniGPT-v2's projection is not supported: its checkpoint also carries the LoRA adapters the loader merges.");
        Options = options;
        DType = dtype;
        _manifest = manifest;
        _preset = ModelPreset.For(manifest.Variant);
        var load = new MiniGptLoadOptions { DType = MiniGptDType.Float32, Threads = options.Threads };
        _parts = ModelLoader.Load(manifest, load, progress, ct, dtype);
        try
        {
            _vision = (EvaVisionEncoder)_parts.Vision!;
            _projector = ((VisionProjector)_parts.Projector!).Module;
            _llm = _parts.LanguageModel.Model;
            foreach (var p in _llm.parameters()) p.requires_grad = false;
            foreach (var p in _projector.parameters()) p.requires_grad = false;
            _layout = new ExampleLayout(_preset, _parts.LanguageModel, options.Stage, options.TextTokens);
            using var initScope = NewDisposeScope();
            using var noGrad = no_grad();
            var named = _projector.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            if (options.ResetProjection)
            {
                var (outDim, inDim) = (named[WeightKey].shape[0], named[WeightKey].shape[1]);
                using var gen = new Generator((ulong)options.Seed);
                using var bound = (1.0 / Math.Sqrt(inDim)).ToScalar();
                using var two = 2.0.ToScalar();
                // nn.Linear's reset_parameters: kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)); the bias the same.
                _initialWeight = rand([outDim, inDim], generator: gen, dtype: ScalarType.Float64).mul_(two).sub_(TensorMath.One).mul_(bound).to(dtype);
                _initialBias = rand([outDim], generator: gen, dtype: ScalarType.Float64).mul_(two).sub_(TensorMath.One).mul_(bound).to(dtype);
            }
            else
            {
                _initialWeight = named[WeightKey].detach().to(dtype).clone();
                _initialBias = named[BiasKey].detach().to(dtype).clone();
            }
            _initialWeight.DetachFromDisposeScope();
            _initialBias.DetachFromDisposeScope();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    /// <summary>The run's options.</summary>
    public ProjectionTrainingOptions Options { get; }

    /// <summary>The trained parameters' and the language model's dtype (float32; float64 in exactness tests).</summary>
    internal ScalarType DType { get; }

    /// <summary>Image embeddings per image.</summary>
    internal int TokensPerImage => _projector.TokensPerImage;

    /// <summary>The current projection weight <c>[out, in]</c> and bias (requiring grad) of the run in progress or last run.</summary>
    internal Tensor? Weight { get; private set; }

    /// <inheritdoc cref="Weight"/>
    internal Tensor? Bias { get; private set; }

    /// <summary>The layout of examples (tests read the token runs).</summary>
    internal ExampleLayout Layout => _layout;

    /// <summary>
    /// Loads the model a manifest describes (the vision tower, Q-Former and language model in float32 on the CPU) for
    /// training its projection.
    /// </summary>
    /// <exception cref="MiniGptConfigurationException">Bad options or manifest, a language-model-only manifest, or MiniGPT-v2.</exception>
    /// <exception cref="MiniGptWeightsException">A weight file is missing, corrupt or does not fit.</exception>
    /// <exception cref="OperationCanceledException">Cancelled while loading.</exception>
    public static Task<ProjectionTrainer> LoadAsync(string manifestPath, ProjectionTrainingOptions options,
        IProgress<MiniGptProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var manifest = ModelManifest.Load(manifestPath);
        return Task.Run(() => new ProjectionTrainer(manifest, options, ScalarType.Float32, progress, cancellationToken), cancellationToken);
    }

    /// <summary>Synchronous load with the language model and the trained parameters in <paramref name="dtype"/> (tests: float64).</summary>
    internal static ProjectionTrainer Load(string manifestPath, ProjectionTrainingOptions options, ScalarType dtype)
        => new(ModelManifest.Load(manifestPath), options, dtype, null, CancellationToken.None);

    /// <summary>
    /// Trains for <see cref="ProjectionTrainingOptions.Steps"/> steps on <paramref name="data"/>, writing the checkpoint,
    /// the manifest and the optimizer state into <paramref name="outputDirectory"/> every
    /// <see cref="ProjectionTrainingOptions.CheckpointEvery"/> steps and at the end. With <paramref name="resume"/>, continues
    /// from the state saved there (same data, options and seed give the same result as an uninterrupted run); without it,
    /// starts from the initial projection. Each step is reported to <paramref name="progress"/> on the training thread.
    /// </summary>
    /// <exception cref="OperationCanceledException">Cancelled between steps; the folder keeps the last saved state.</exception>
    /// <exception cref="MiniGptConfigurationException">Bad data for the stage, or a saved state from other options.</exception>
    public Task<TrainingResult> TrainAsync(IReadOnlyList<TrainingExample> data, string outputDirectory, bool resume = false,
        IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(outputDirectory);
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (data.Count == 0) throw new MiniGptConfigurationException("The training data holds no examples.");
        return Task.Run(() => Train(data, outputDirectory, resume, progress, cancellationToken), cancellationToken);
    }

    private TrainingResult Train(IReadOnlyList<TrainingExample> data, string dir, bool resume, IProgress<TrainingProgress>? progress, CancellationToken ct)
    {
        TorchThreads.Pin(Options.Threads);
        var sequences = data.Select(_layout.Build).ToArray();
        EncodeImages(data, ct);
        Directory.CreateDirectory(dir);
        ResetParameters();
        using var adam = new AdamW([(WeightKey, Weight!, Options.WeightDecay), (BiasKey, Bias!, 0.0)], Options.Beta1, Options.Beta2, Options.Epsilon);
        var start = resume ? TrainerState.Restore(dir, Options, DType, Weight!, Bias!, adam) : 0;
        var clock = Stopwatch.StartNew();
        var loss = double.NaN;
        for (var step = start; step < Options.Steps; step++)
        {
            ct.ThrowIfCancellationRequested();
            var lr = LearningRateSchedule.At(step, Options.Steps, Options.Warmup, Options.WarmupLearningRate, Options.PeakLearningRate, Options.FinalLearningRate);
            var batch = BatchIndices(step, data.Count);
            using (var scope = NewDisposeScope())
            {
                var lossTensor = Loss(batch.Select(i => sequences[i]).ToArray(), batch.Select(i => data[i].ImagePath).ToArray());
                loss = lossTensor.ToDouble();
                if (!double.IsFinite(loss)) throw new MiniGptNumericsException($"The loss is {loss} at step {step + 1}.", step + 1);
                lossTensor.backward();
            }
            adam.Step(lr);
            var done = step + 1;
            if (done % Options.CheckpointEvery == 0 || done == Options.Steps) Save(dir, adam);
            var rate = (done - start) / Math.Max(clock.Elapsed.TotalSeconds, 1e-9);
            progress?.Report(new TrainingProgress(done, Options.Steps, loss, lr, rate, TimeSpan.FromSeconds((Options.Steps - done) / rate)));
        }
        if (start >= Options.Steps) Save(dir, adam);
        return new TrainingResult(Math.Max(start, Options.Steps), loss, Path.Combine(dir, CheckpointFileName), Path.Combine(dir, ManifestFileName));
    }

    /// <summary>
    /// The examples of step <paramref name="step"/>: sample k = step * batch + j is position k mod N of epoch k / N's
    /// permutation (a seeded shuffle per epoch), so any step's batch is known without replaying the run.
    /// </summary>
    internal int[] BatchIndices(int step, int count)
    {
        var batch = new int[Options.BatchSize];
        int[]? order = null;
        var orderEpoch = -1L;
        for (var j = 0; j < batch.Length; j++)
        {
            var k = (long)step * Options.BatchSize + j;
            var epoch = k / count;
            if (epoch != orderEpoch)
            {
                order = Enumerable.Range(0, count).ToArray();
                new Random(unchecked(Options.Seed * 1_000_003 + (int)epoch)).Shuffle(order);
                orderEpoch = epoch;
            }
            batch[j] = order![k % count];
        }
        return batch;
    }

    /// <summary>Starts from the initial projection: fresh leaves requiring grad.</summary>
    internal void ResetParameters()
    {
        Weight?.Dispose();
        Bias?.Dispose();
        Weight = _initialWeight.clone().requires_grad_(true);
        Bias = _initialBias.clone().requires_grad_(true);
        Weight.DetachFromDisposeScope();
        Bias.DetachFromDisposeScope();
    }

    /// <summary>Runs each image not seen before through the frozen tower and Q-Former (or concatenation) once: what <c>llama_proj</c> receives.</summary>
    internal void EncodeImages(IEnumerable<TrainingExample> data, CancellationToken ct)
    {
        foreach (var path in data.Select(e => e.ImagePath).Distinct(StringComparer.Ordinal))
        {
            ct.ThrowIfCancellationRequested();
            if (_projectionInputs.ContainsKey(path)) continue;
            using var features = _vision.Encode(ImageInput.FromFile(path), ct);
            using var scope = NewDisposeScope();
            using var noGrad = no_grad();
            var input = _projector.ProjectionInput(features.ToTorch().to(_projector.Device))[0].to(DType).contiguous();
            _projectionInputs[path] = input.DetachFromDisposeScope();
        }
    }

    /// <summary>
    /// The reference's loss for a batch (a scalar tensor in the caller's scope, differentiable w.r.t. <see cref="Weight"/>
    /// and <see cref="Bias"/>): each sequence's token embeddings with its image's <c>llama_proj</c> output spliced in, right
    /// padded (masked), labels -100 everywhere but the target tokens, next-token cross-entropy averaged over the targets.
    /// </summary>
    internal Tensor Loss(IReadOnlyList<ExampleSequence> batch, IReadOnlyList<string> imagePaths)
    {
        var inputs = stack(imagePaths.Select(p => _projectionInputs[p]).ToArray());
        var images = nn.functional.linear(inputs, Weight!, Bias!); // [B, Q, H]
        var q = (int)images.shape[1];
        var lengths = batch.Select(s => s.Length(q)).ToArray();
        var t = lengths.Max();
        var hidden = _llm.Config.HiddenSize;
        var labels = new long[batch.Count * t];
        Array.Fill(labels, -100L);
        var rows = new List<Tensor>();
        for (var i = 0; i < batch.Count; i++)
        {
            var parts = new List<Tensor> { Embed(batch[i].BeforeImage), images[i] };
            var pos = batch[i].BeforeImage.Count + q;
            foreach (var run in batch[i].AfterImage)
            {
                parts.Add(Embed(run.Ids));
                if (run.IsTarget)
                    for (var k = 0; k < run.Ids.Count; k++) labels[i * t + pos + k] = run.Ids[k];
                pos += run.Ids.Count;
            }
            if (lengths[i] < t) parts.Add(zeros([t - lengths[i], hidden], DType, _llm.Device));
            rows.Add(cat(parts, 0));
        }
        var embeds = stack(rows);
        Tensor? mask = null;
        if (lengths.Any(l => l < t))
        {
            var m = new long[batch.Count * t];
            for (var i = 0; i < batch.Count; i++) Array.Fill(m, 1L, i * t, lengths[i]);
            mask = tensor(m, [batch.Count, t]);
        }
        var logits = _llm.Forward(embeds, mask); // [B, T, V]
        var vocab = logits.shape[2];
        var predicted = logits.narrow(1, 0, t - 1).reshape(-1, vocab);
        var target = tensor(labels, [batch.Count, t]).narrow(1, 1, t - 1).reshape(-1).to(_llm.Device);
        return nn.functional.cross_entropy(predicted, target, ignore_index: -100);
    }

    /// <summary>Token embeddings <c>[n, H]</c> (a normal tensor: inference-mode lookups are copied out).</summary>
    private Tensor Embed(IReadOnlyList<int> ids)
    {
        if (ids.Count == 0) return zeros([0, _llm.Config.HiddenSize], DType, _llm.Device);
        using var idTensor = tensor(ids.Select(i => (long)i).ToArray(), [ids.Count]);
        using var looked = _llm.EmbedTokens(idTensor);
        return looked.clone();
    }

    private void Save(string dir, AdamW adam)
    {
        TrainerState.Save(dir, Options, DType, Weight!, Bias!, adam);
        using (var scope = NewDisposeScope())
        {
            Weights.TorchCheckpointWriter.Write(Path.Combine(dir, CheckpointFileName),
            [
                new(WeightKey, Weight!.detach().to(ScalarType.Float32)),
                new(BiasKey, Bias!.detach().to(ScalarType.Float32)),
            ], underModelKey: true);
        }
        TrainerState.WriteManifest(Path.Combine(dir, ManifestFileName), _manifest, _preset, CheckpointFileName);
    }

    /// <summary>Frees the model and the cached image features.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var t in _projectionInputs.Values) t.Dispose();
        _projectionInputs.Clear();
        Weight?.Dispose();
        Bias?.Dispose();
        _initialWeight?.Dispose();
        _initialBias?.Dispose();
        _parts.Vision?.Dispose();
        _parts.Projector?.Dispose();
        _parts.LanguageModel.Dispose();
    }
}
