using MiniGpt4.Abstractions;
using MiniGpt4.Bridge;
using MiniGpt4.Language;
using MiniGpt4.Runtime;
using MiniGpt4.Vision;
using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Models;

/// <summary>The parts a manifest describes, loaded; the caller composes them (and owns them).</summary>
internal sealed record LoadedModel(ModelVariant Variant, IVisionEncoder? Vision, IProjector? Projector, LlamaLanguageModel LanguageModel);

/// <summary>
/// Loads the parts of a manifest: checks every file exists, opens each weight file once, checks every
/// configuration against the files' headers, and only then allocates and reads the parts.
/// </summary>
internal static class ModelLoader
{
    public static LoadedModel Load(ModelManifest m, MiniGptLoadOptions options, IProgress<MiniGptProgress>? progress, CancellationToken ct)
    {
        options.Validate();
        ct.ThrowIfCancellationRequested();
        NativeRuntime.EnsureLoaded();
        if (options.Threads is int threads) set_num_threads(threads);
        var device = ParseDevice(options.Device);
        var dtype = ToScalarType(options.DType);
        var preset = ModelPreset.For(m.Variant);
        var llmPath = m.Resolve(m.Llm.Path);
        var llmFolder = Directory.Exists(llmPath) ? llmPath : Path.GetDirectoryName(Path.GetFullPath(llmPath))!;
        var tokenizerPath = m.Llm.Tokenizer is null ? null : m.Resolve(m.Llm.Tokenizer);
        var visionPath = m.Resolve(m.Vision.Checkpoint);
        var stagePath = m.Resolve(m.Projection.Checkpoint);
        var blip2Path = m.QFormer is { } qf ? m.Resolve(qf.Checkpoint) : null;

        RequireExists(llmPath, "llm.path");
        if (tokenizerPath is not null) RequireExists(tokenizerPath, "llm.tokenizer");
        if (!m.IsLanguageModelOnly)
        {
            RequireExists(visionPath, "vision.checkpoint");
            RequireExists(stagePath, "projection.checkpoint");
            if (blip2Path is not null) RequireExists(blip2Path, "qformer.checkpoint");
            if (m.QFormer?.Config is { } bert) RequireExists(m.Resolve(bert), "qformer.config");
        }

        // Each file opened once; every check reads headers only, before anything large is allocated.
        var llmConfig = LlamaConfig.FromFile(llmFolder);
        var tokenizer = LlamaLanguageModel.LoadTokenizer(llmPath, tokenizerPath);
        using var llmWeights = WeightFiles.Open(llmPath);
        using var visionWeights = m.IsLanguageModelOnly ? null : WeightFiles.Open(visionPath);
        using var stageWeights = m.IsLanguageModelOnly ? null : WeightFiles.Open(stagePath);
        using var blip2Weights = m.IsLanguageModelOnly || blip2Path is null ? null : WeightFiles.Open(blip2Path);
        m.ValidateAgainst(llmConfig, llmWeights, visionWeights, blip2Weights);
        if (stageWeights is not null) CheckProjectionWidth(stageWeights, stagePath, llmConfig, llmPath);
        ct.ThrowIfCancellationRequested();

        EvaVisionEncoder? vision = null;
        VisionProjector? projector = null;
        LlamaLanguageModel? llm = null;
        try
        {
            if (!m.IsLanguageModelOnly)
            {
                progress?.Report(new MiniGptProgress("vision encoder", 0.0, visionPath));
                var vcfg = new VisionConfig(m.Vision.ImageSize, m.Vision.PatchSize, m.Vision.Width, m.Vision.Depth, m.Vision.Heads, m.Vision.MlpHidden);
                var vit = EvaVisionTransformer.Load(visionWeights!, vcfg, dtype, device, Stage("vision encoder", 0.0, 0.1, visionPath));
                vision = new EvaVisionEncoder(vit, m.Vision.ImageSize, options.Images, dtype, device);
                ct.ThrowIfCancellationRequested();

                progress?.Report(new MiniGptProgress("projector", 0.1, stagePath));
                IVisionProjector inner = preset.Projector == ProjectorKind.QFormer
                    ? QFormerProjector.Load(blip2Weights!, stageWeights!, QFormerSettings(m), dtype, device)
                    : ConcatProjector.Load(stageWeights!, vcfg, dtype, device);
                projector = new VisionProjector(inner);
                ct.ThrowIfCancellationRequested();
            }

            progress?.Report(new MiniGptProgress("language model", 0.15, llmPath));
            var model = LlamaForCausalLM.Load(llmConfig, llmWeights, dtype, device, Stage("language model", 0.15, 0.85, llmPath), Path.Combine(llmFolder, "config.json"));
            llm = new LlamaLanguageModel(model, tokenizer, Math.Min(options.ContextLength ?? llmConfig.MaxPositionEmbeddings, llmConfig.MaxPositionEmbeddings));
            if (preset.LoraAlpha is { } defaultAlpha && stageWeights is not null)
            {
                progress?.Report(new MiniGptProgress("LoRA merge", 0.98, stagePath));
                llm.MergeLora(stageWeights, m.Lora?.Alpha ?? defaultAlpha);
            }
            ct.ThrowIfCancellationRequested();
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

    private static QFormerConfig QFormerSettings(ModelManifest m)
    {
        var q = m.QFormer!;
        return q.Config is null
            ? new QFormerConfig(NumQueryTokens: q.NumQueryTokens, EncoderWidth: m.Vision.Width)
            : QFormerConfig.FromBertConfigJson(m.Resolve(q.Config), q.NumQueryTokens, encoderWidth: m.Vision.Width);
    }

    /// <summary>The projection's output width (from its header) is the language model's hidden size: checked once, before loading.</summary>
    private static void CheckProjectionWidth(IWeightSource stage, string stagePath, LlamaConfig llm, string llmPath)
    {
        if (!stage.TryGetInfo("llama_proj.weight", out var proj))
            throw new MiniGptWeightsException($"'{stagePath}' has no llama_proj.weight: it is not a MiniGPT stage-2 checkpoint.", stagePath, "llama_proj.weight");
        if (proj.Shape.Length != 2 || proj.Shape[0] != llm.HiddenSize)
            throw new MiniGptWeightsException($"llama_proj.weight in '{stagePath}' has shape [{string.Join(", ", proj.Shape)}] but the language model " +
                                              $"'{llmPath}' has hidden size {llm.HiddenSize}: the projection does not belong to this language model.", stagePath, "llama_proj.weight");
    }

    private static void RequireExists(string path, string field)
    {
        if (!File.Exists(path) && !Directory.Exists(path))
            throw new MiniGptConfigurationException($"The manifest's {field} points to '{path}', which does not exist.");
    }

    public static Device ParseDevice(string device)
    {
        var d = device.Trim().ToLowerInvariant();
        if (d == "cpu") return CPU;
        if (d == "cuda" || d.StartsWith("cuda:", StringComparison.Ordinal))
        {
            if (!cuda.is_available())
                throw new MiniGptConfigurationException($"Device '{device}' requested but CUDA is not available: reference a libtorch-cuda backend package and check the NVIDIA driver.");
            return d == "cuda" ? CUDA : new Device(d);
        }
        throw new MiniGptConfigurationException($"Unknown device '{device}' (expected cpu, cuda or cuda:N).");
    }

    public static ScalarType ToScalarType(MiniGptDType t) => t switch
    {
        MiniGptDType.Float32 => ScalarType.Float32,
        MiniGptDType.BFloat16 => ScalarType.BFloat16,
        MiniGptDType.Float16 => ScalarType.Float16,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };
}
