using MiniGpt4.Abstractions;
using MiniGpt4.Bridge;
using MiniGpt4.Language;
using MiniGpt4.Runtime;
using MiniGpt4.Text;
using MiniGpt4.Vision;
using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Models;

/// <summary>The parts a manifest describes, loaded; the caller composes them (and owns them).</summary>
internal sealed record LoadedModel(ModelVariant Variant, IVisionEncoder? Vision, IProjector? Projector, LlamaLanguageModel LanguageModel);

/// <summary>
/// A manifest's configurations, tokenizer and weight files, each read or opened once and checked together before
/// anything large is allocated: every path exists (the tokenizer is then parsed on a worker while the weights load;
/// a malformed one is reported when <see cref="Tokenizer"/> is first read), and (headers only, no tensor data)
/// <c>config.json</c> fits the
/// language model's weights, the vision section the ViT checkpoint, the Q-Former configuration the BLIP-2
/// checkpoint and the projection's width the language model. The owner disposes the weight files.
/// </summary>
internal sealed class ModelFiles : IDisposable
{
    public ModelFiles(ModelManifest m, bool mapWeights = false)
    {
        var vision = !m.IsLanguageModelOnly;
        LlmPath = Existing(m, m.Llm.Path, "llm.path");
        var tokenizerPath = m.Llm.Tokenizer is { } t ? Existing(m, t, "llm.tokenizer") : null;
        VisionPath = vision ? Existing(m, m.Vision.Checkpoint, "vision.checkpoint") : null;
        StagePath = vision ? Existing(m, m.Projection.Checkpoint, "projection.checkpoint") : null;
        var blip2Path = vision && m.QFormer is { } q ? Existing(m, q.Checkpoint, "qformer.checkpoint") : null;
        var bertPath = vision && m.QFormer?.Config is { } bert ? Existing(m, bert, "qformer.config") : null;

        LlmConfig = LlamaConfig.FromFile(m.LlmFolder);
        Vision = m.Vision.ToConfig();
        QFormer = vision ? m.ReadQFormerConfig() : null;
        // The tokenizer (about 0.1 s to parse) is read on a worker while the weights are opened and loaded; a missing
        // file is still reported here, before anything is allocated.
        LlamaLanguageModel.CheckTokenizer(LlmPath, tokenizerPath);
        var llmPath = LlmPath;
        _tokenizer = Task.Run(() => LlamaLanguageModel.LoadTokenizer(llmPath, tokenizerPath));
        _tokenizer.ContinueWith(static t => _ = t.Exception, TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously);
        try
        {
            LlmWeights = WeightFiles.Open(LlmPath, mapWeights);
            LlmConfig.CheckAgainst(LlmWeights, Path.Combine(m.LlmFolder, "config.json"));
            if (!vision) return;
            VisionWeights = WeightFiles.Open(VisionPath!, mapWeights);
            Vision.CheckAgainst(EvaVitNames.ToLavis(VisionWeights), m.Where);
            if (QFormer is not null)
            {
                Blip2Weights = WeightFiles.Open(blip2Path!, mapWeights);
                QFormer.CheckAgainst(QFormerNames.ToLavis(Blip2Weights), bertPath is null ? m.Where : $"{m.Where} (with {bertPath})");
            }
            StageWeights = WeightFiles.Open(StagePath!, mapWeights);
            CheckProjectionWidth(StageWeights, LlmConfig, m.LlmFolder);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string LlmPath { get; }
    public string? VisionPath { get; }
    public string? StagePath { get; }
    public LlamaConfig LlmConfig { get; }
    /// <summary>The language model's tokenizer (waits for it to be read; rethrows what reading it threw).</summary>
    public LlamaTextTokenizer Tokenizer => _tokenizer.GetAwaiter().GetResult();

    private readonly Task<LlamaTextTokenizer> _tokenizer;
    public VisionConfig Vision { get; }
    public QFormerConfig? QFormer { get; }
    public IWeightSource LlmWeights { get; } = null!;
    public IWeightSource? VisionWeights { get; }
    public IWeightSource? Blip2Weights { get; }
    public IWeightSource? StageWeights { get; }

    public void Dispose()
    {
        foreach (var weights in new[] { LlmWeights, VisionWeights, Blip2Weights, StageWeights }) weights?.Dispose();
    }

    /// <summary>The projection's output width (from its header) is the language model's hidden size.</summary>
    private static void CheckProjectionWidth(IWeightSource stageWeights, LlamaConfig llm, string llmFolder)
    {
        var stage = stageWeights.Description;
        if (!stageWeights.TryGetInfo("llama_proj.weight", out var proj))
            throw new MiniGptWeightsException($"'{stage}' has no llama_proj.weight: it is not a MiniGPT stage-2 checkpoint.", stage, "llama_proj.weight");
        if (proj.Shape.Length != 2 || proj.Shape[0] != llm.HiddenSize)
            throw new MiniGptWeightsException($"llama_proj.weight in '{stage}' has shape [{string.Join(", ", proj.Shape)}] but the language model " +
                                              $"'{llmFolder}' has hidden size {llm.HiddenSize}: the projection does not belong to this language model.", stage, "llama_proj.weight");
    }

    private static string Existing(ModelManifest m, string path, string field)
    {
        var full = m.Resolve(path);
        if (!File.Exists(full) && !Directory.Exists(full))
            throw new MiniGptConfigurationException($"The manifest's {field} points to '{full}', which does not exist.");
        return full;
    }
}

/// <summary>Loads the parts of a manifest: opens and checks its files (<see cref="ModelFiles"/>), and only then allocates and reads the parts.</summary>
internal static class ModelLoader
{
    /// <summary>Loads the parts; the language model in <paramref name="languageModelDType"/> when given (float64 for the trainer's exactness checks), else the options' dtype.</summary>
    public static LoadedModel Load(ModelManifest m, MiniGptLoadOptions options, IProgress<MiniGptProgress>? progress, CancellationToken ct,
        ScalarType? languageModelDType = null)
    {
        options.Validate();
        ct.ThrowIfCancellationRequested();
        NativeRuntime.EnsureLoaded();
        if (options.Threads is int threads) set_num_threads(threads);
        var device = ParseDevice(options.Device);
        var dtype = ToScalarType(options.DType);
        var preset = ModelPreset.For(m.Variant);
        using var files = new ModelFiles(m, options.MemoryMapWeights);
        ct.ThrowIfCancellationRequested();

        EvaVisionEncoder? vision = null;
        VisionProjector? projector = null;
        LlamaLanguageModel? llm = null;
        var warm = new List<nn.Module>();
        try
        {
            if (!m.IsLanguageModelOnly)
            {
                progress?.Report(new MiniGptProgress("vision encoder", 0.0, files.VisionPath));
                var vit = EvaVisionTransformer.Load(files.VisionWeights!, files.Vision, dtype, device, Stage("vision encoder", 0.0, 0.1, files.VisionPath!),
                    keepFloat16: options.KeepFloat16Weights);
                vision = new EvaVisionEncoder(vit, options.Images);
                warm.Add(vit);
                ct.ThrowIfCancellationRequested();

                progress?.Report(new MiniGptProgress("projector", 0.1, files.StagePath));
                projector = new VisionProjector(preset.Projector == ProjectorKind.QFormer
                    ? QFormerProjector.Load(files.Blip2Weights!, files.StageWeights!, files.QFormer!, dtype, device, options.KeepFloat16Weights)
                    : ConcatProjector.Load(files.StageWeights!, files.Vision, dtype, device));
                ct.ThrowIfCancellationRequested();
            }

            using var quantizing = QuantizeAtLoad(files, options.Quantization, preset);
            var llmWeights = (IWeightSource?)quantizing ?? files.LlmWeights;
            var quantized = Language.Quantization.LlamaQuantization.Detect(llmWeights);
            var stage = quantized is null ? "language model" : $"language model ({Language.Quantization.LlamaQuantization.Name(quantized.Blocks)}, head {Language.Quantization.LlamaQuantization.Name(quantized.Head)})";
            progress?.Report(new MiniGptProgress(stage, 0.15, files.LlmPath));
            var model = LlamaForCausalLM.Load(files.LlmConfig, llmWeights, languageModelDType ?? dtype, device, Stage(stage, 0.15, 0.8, files.LlmPath),
                Path.Combine(m.LlmFolder, "config.json"), keepFloat16: options.KeepFloat16Weights && preset.LoraAlpha is null);
            LlamaTextTokenizer tokenizer;
            try { tokenizer = files.Tokenizer; }
            catch
            {
                model.Dispose(); // a malformed tokenizer is reported after the weights were read: free them here
                throw;
            }
            llm = new LlamaLanguageModel(model, tokenizer, Math.Min(options.ContextLength ?? int.MaxValue, files.LlmConfig.MaxPositionEmbeddings));
            if (preset.LoraAlpha is { } defaultAlpha && files.StageWeights is not null)
            {
                progress?.Report(new MiniGptProgress("LoRA merge", 0.96, files.StagePath));
                llm.MergeLora(files.StageWeights, m.Lora?.Alpha ?? defaultAlpha);
            }
            ct.ThrowIfCancellationRequested();
            // The first answer pays no compilation of the decode path: warmed on a worker while the pages are mapped
            // (each about 60 ms for a 3 GB bf16 model here).
            var warmup = Task.Run(() => Language.Kernels.DecoderWarmup.Run(model));
            try
            {
                if (options.PrefaultWeights)
                {
                    progress?.Report(new MiniGptProgress("prefault", 0.98, files.LlmPath));
                    warm.Add(model);
                    PageWarmer.Touch(warm.SelectMany(module => module.parameters().Concat(module.buffers())), ct); // buffers: packed quantized weights
                }
            }
            catch
            {
                // The model is not disposed while the warm-up reads it; the prefault's error (a cancellation) is the one thrown.
                try { warmup.Wait(CancellationToken.None); }
                catch (AggregateException) { }
                throw;
            }
            warmup.GetAwaiter().GetResult();
            progress?.Report(new MiniGptProgress("ready", 1.0));
            return new LoadedModel(m.Variant, vision, projector, llm);

            // Reported after every tensor read: also where a cancelled load stops (the partly loaded part is freed).
            SyncProgress<double> Stage(string stage, double from, double span, string file) => new(f =>
            {
                ct.ThrowIfCancellationRequested();
                progress?.Report(new MiniGptProgress(stage, from + span * f, file));
            });
        }
        catch
        {
            vision?.Dispose();
            projector?.Dispose();
            llm?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The language model's weights quantized as <paramref name="quantization"/> asks (null: load them as stored). A
    /// file already in that format needs nothing; one in another format, or a model whose LoRA adapters are merged
    /// after loading (MiniGPT-v2), is refused.
    /// </summary>
    private static Language.Quantization.QuantizingWeightSource? QuantizeAtLoad(ModelFiles files, MiniGptQuantization quantization, ModelPreset preset)
    {
        if (quantization == MiniGptQuantization.None) return null;
        var wanted = ToQuantFormat(quantization);
        var stored = Language.Quantization.LlamaQuantization.Detect(files.LlmWeights);
        if (stored is not null)
            return stored.Blocks == wanted ? null : throw new MiniGptConfigurationException(
                $"'{files.LlmPath}' holds {Language.Quantization.LlamaQuantization.Name(stored.Blocks)} weights; they cannot be requantized to {Language.Quantization.LlamaQuantization.Name(wanted)} (convert from the float model instead).");
        if (preset.LoraAlpha is not null)
            throw new MiniGptConfigurationException("Quantizing at load is not supported for models with LoRA adapters (MiniGPT-v2): the adapters are merged into float weights after loading.");
        return new Language.Quantization.QuantizingWeightSource(files.LlmWeights, Language.Quantization.LlamaQuantization.For(wanted), files.LlmConfig.TieWordEmbeddings);
    }

    /// <summary>The block format of a public quantization choice.</summary>
    public static Language.Quantization.QuantFormat ToQuantFormat(MiniGptQuantization q) => q switch
    {
        MiniGptQuantization.Int8 => Language.Quantization.QuantFormat.Q8,
        MiniGptQuantization.Int4 => Language.Quantization.QuantFormat.Q4,
        _ => Language.Quantization.QuantFormat.None,
    };

    public static Device ParseDevice(string device)
    {
        var d = device.Trim().ToLowerInvariant();
        if (d == "cpu") return CPU;
        if (d != "cuda" && !d.StartsWith("cuda:", StringComparison.Ordinal))
            throw new MiniGptConfigurationException($"Unknown device '{device}' (expected cpu, cuda or cuda:N).");
        if (!cuda.is_available())
            throw new MiniGptConfigurationException($"Device '{device}' requested but CUDA is not available: reference a libtorch-cuda backend package and check the NVIDIA driver.");
        return new Device(d);
    }

    public static ScalarType ToScalarType(MiniGptDType t) => t switch
    {
        MiniGptDType.Float32 => ScalarType.Float32,
        MiniGptDType.BFloat16 => ScalarType.BFloat16,
        MiniGptDType.Float16 => ScalarType.Float16,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };
}
