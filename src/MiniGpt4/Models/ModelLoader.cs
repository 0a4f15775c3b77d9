using MiniGpt4.Bridge;
using MiniGpt4.Runtime;
using MiniGpt4.Vision;
using static TorchSharp.torch;

namespace MiniGpt4.Models;

/// <summary>Builds a <see cref="MiniGptPipeline"/> from a manifest: validates every file first, then loads the parts.</summary>
internal static class ModelLoader
{
    public static MiniGptPipeline Load(ModelManifest m, MiniGptLoadOptions options, IProgress<MiniGptProgress>? progress, CancellationToken ct)
    {
        options.Validate();
        ct.ThrowIfCancellationRequested();
        NativeRuntime.EnsureLoaded();
        if (options.Threads is int threads) set_num_threads(threads);
        var device = ParseDevice(options.Device);
        var dtype = ToScalarType(options.DType);
        var llmPath = m.Resolve(m.Llm.Path);
        var tokenizer = m.Llm.Tokenizer is null ? null : m.Resolve(m.Llm.Tokenizer);

        // Validate that every file exists before allocating anything large.
        RequireExists(llmPath, "llm.path");
        if (tokenizer is not null) RequireExists(tokenizer, "llm.tokenizer");
        if (!m.IsLanguageModelOnly)
        {
            RequireExists(m.Resolve(m.Vision.Checkpoint), "vision.checkpoint");
            RequireExists(m.Resolve(m.Projection.Checkpoint), "projection.checkpoint");
            if (m.QFormer is { } q)
            {
                RequireExists(m.Resolve(q.Checkpoint), "qformer.checkpoint");
                if (q.Config is not null) RequireExists(m.Resolve(q.Config), "qformer.config");
            }
        }

        // Every configuration against its weight files' headers, before anything is allocated.
        m.ValidateAgainstCheckpoints();

        // Cheap checks that catch mismatched files before gigabytes are read: the language model's
        // configuration and tokenizer, and the projection's output width (from the file header).
        var llmConfig = Language.LlamaConfig.FromFile(llmPath);
        var textTokenizer = LlamaLanguageModel.LoadTokenizer(llmPath, tokenizer);
        if (!m.IsLanguageModelOnly)
        {
            var projection = m.Resolve(m.Projection.Checkpoint);
            using var stage2 = Weights.WeightFiles.Open(projection);
            if (!stage2.TryGetInfo("llama_proj.weight", out var proj))
                throw new MiniGptWeightsException($"'{projection}' has no llama_proj.weight: it is not a MiniGPT stage-2 checkpoint.", projection, "llama_proj.weight");
            if (proj.Shape.Length != 2 || proj.Shape[0] != llmConfig.HiddenSize)
                throw new MiniGptWeightsException($"llama_proj.weight in '{projection}' has shape [{string.Join(", ", proj.Shape)}] but the language model " +
                                                  $"'{llmPath}' has hidden size {llmConfig.HiddenSize}: the projection does not belong to this language model.", projection, "llama_proj.weight");
        }

        EvaVisionEncoder? vision = null;
        VisionProjector? projector = null;
        LlamaLanguageModel? llm = null;
        try
        {
            if (!m.IsLanguageModelOnly)
            {
                progress?.Report(new MiniGptProgress("vision encoder", 0.0, m.Resolve(m.Vision.Checkpoint)));
                var vcfg = new VisionConfig(m.Vision.ImageSize, m.Vision.PatchSize, m.Vision.Width, m.Vision.Depth, m.Vision.Heads, m.Vision.MlpHidden);
                var vit = EvaVisionTransformer.Load(m.Resolve(m.Vision.Checkpoint), vcfg, dtype, device);
                vision = new EvaVisionEncoder(vit, m.Vision.ImageSize, options.Images, dtype, device);
                ct.ThrowIfCancellationRequested();

                progress?.Report(new MiniGptProgress("projector", 0.1, m.Resolve(m.Projection.Checkpoint)));
                IVisionProjector inner = m.QFormer is { } q
                    ? QFormerProjector.Load(m.Resolve(q.Checkpoint), m.Resolve(m.Projection.Checkpoint),
                        q.Config is null
                            ? new QFormerConfig(NumQueryTokens: q.NumQueryTokens, EncoderWidth: m.Vision.Width)
                            : QFormerConfig.FromBertConfigJson(m.Resolve(q.Config), q.NumQueryTokens, encoderWidth: m.Vision.Width),
                        dtype, device)
                    : ConcatProjector.Load(m.Resolve(m.Projection.Checkpoint), vcfg, dtype, device);
                projector = new VisionProjector(inner);
                ct.ThrowIfCancellationRequested();
            }

            progress?.Report(new MiniGptProgress("language model", 0.15, llmPath));
            // Reported after every tensor: also where a cancelled load stops (the partly loaded model is freed).
            var llmProgress = new SyncProgress<double>(f =>
            {
                ct.ThrowIfCancellationRequested();
                progress?.Report(new MiniGptProgress("language model", 0.15 + 0.85 * f, llmPath));
            });
            llm = LlamaLanguageModel.Load(llmPath, textTokenizer, dtype, device, options.ContextLength, llmProgress);
            if (m.Variant == ModelVariant.MiniGptV2 && !m.IsLanguageModelOnly)
            {
                progress?.Report(new MiniGptProgress("LoRA merge", 0.98, m.Resolve(m.Projection.Checkpoint)));
                llm.MergeLora(m.Resolve(m.Projection.Checkpoint), (m.Lora ?? new ModelManifest.LoraSection()).Alpha);
            }
            if (projector is not null && projector.OutputDim != llm.HiddenSize)
                throw new MiniGptWeightsException($"The projection outputs {projector.OutputDim} features but the language model's hidden size is {llm.HiddenSize}: " +
                                                  $"'{m.Projection.Checkpoint}' does not belong to '{m.Llm.Path}'.", m.Resolve(m.Projection.Checkpoint), "llama_proj.weight");
            ct.ThrowIfCancellationRequested();
            progress?.Report(new MiniGptProgress("ready", 1.0));
            return new MiniGptPipeline(m.Variant, vision, projector, llm, ownsComponents: true, options);
        }
        catch
        {
            vision?.Dispose();
            projector?.Dispose();
            llm?.Dispose();
            throw;
        }
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
