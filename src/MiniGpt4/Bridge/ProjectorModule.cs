using MiniGpt4.Weights;
using TorchSharp.Modules;
using static MiniGpt4.Weights.WeightShapes;
using static TorchSharp.torch;

namespace MiniGpt4.Bridge;

/// <summary>
/// Turns ViT output tokens into the image embeddings spliced into the LLM prompt:
/// <c>llama_proj(ProjectionInput(tokens))</c>, where each variant's <see cref="ProjectionInput"/> starts with
/// <c>ln_vision</c>. ln_vision is a LayerNorm over the ViT width (eps 1e-5) kept and computed in float32 whatever
/// the model dtype (the reference's fp16-safe LayerNorm wrapper); it starts as weight 1 / bias 0, which is what the
/// Llama-2 and MiniGPT-v2 variants use (no file holds it), while the Q-Former variant loads it from the BLIP-2 checkpoint.
/// </summary>
internal abstract class ProjectorModule : nn.Module<Tensor, Tensor>
{
    /// <summary>
    /// Keys of a MiniGPT stage checkpoint that belong to other parts: the LLM's (rotary buffers, LoRA) and the
    /// Q-Former's position-id buffer.
    /// </summary>
    protected static readonly IReadOnlyList<string> Stage2Ignores = ["llama_model.*", "Qformer.bert.embeddings.position_ids"];

    protected readonly LayerNorm ln_vision;
    protected readonly Linear llama_proj;

    protected ProjectorModule(string name, int visionWidth, int projectionInput, int outputDim, ScalarType dtype, Device device) : base(name)
    {
        VisionWidth = visionWidth;
        OutputDim = outputDim;
        DType = dtype;
        Device = device;
        ln_vision = EmptyInit.LayerNorm(visionWidth, 1e-5, ScalarType.Float32, device);
        llama_proj = EmptyInit.Linear(projectionInput, outputDim, true, dtype, device);
    }

    /// <summary>ViT width W.</summary>
    public int VisionWidth { get; }

    public abstract int TokensPerImage { get; }

    /// <summary>Width of each image embedding (the LLM hidden size).</summary>
    public int OutputDim { get; }

    /// <summary>Dtype of everything but ln_vision (which is always float32).</summary>
    public ScalarType DType { get; }

    public Device Device { get; }

    /// <summary>ViT tokens per image (class token included) this projector requires; null for any number.</summary>
    protected virtual int? RequiredTokens => null;

    /// <summary>
    /// ViT tokens <c>[B, 1 + N, W]</c> (class token first; any float dtype, float32 as the ViT returns them;
    /// any device, moved to the projector's) -> image embeddings <c>[B, TokensPerImage, OutputDim]</c> in
    /// <see cref="DType"/>. Runs under inference mode; the caller owns the result.
    /// </summary>
    public Tensor Project(Tensor visionTokens)
    {
        var ok = visionTokens.shape is [>= 1, var t, var w] && w == VisionWidth && (RequiredTokens is { } n ? t == n : t >= 1);
        if (!ok)
            throw new ArgumentException(
                $"Vision tokens must be [B, {RequiredTokens?.ToString() ?? "T"}, {VisionWidth}]; got [{string.Join(", ", visionTokens.shape)}].",
                nameof(visionTokens));
        using var _ = inference_mode();
        using var scope = NewDisposeScope();
        return forward(visionTokens.to(Device)).MoveToOuterDisposeScope();
    }

    /// <summary>ViT tokens -> <c>[B, TokensPerImage, OutputDim]</c>.</summary>
    public override Tensor forward(Tensor visionTokens) => llama_proj.call(ProjectionInput(visionTokens));

    /// <summary>What <c>llama_proj</c> receives.</summary>
    public abstract Tensor ProjectionInput(Tensor visionTokens);

    /// <summary>ln_vision applied to the ViT tokens in float32, cast to <see cref="DType"/>.</summary>
    public Tensor LnVision(Tensor visionTokens) => ln_vision.call(visionTokens.to(ScalarType.Float32)).to(DType);

    /// <summary>
    /// Shape <c>(out, in)</c> of <c>llama_proj.weight</c> in a stage checkpoint; throws
    /// <see cref="MiniGptWeightsException"/> naming the key when it is absent or not <c>[out, in]</c>.
    /// </summary>
    protected static (int Out, int In) LlamaProjShape(IWeightSource stage)
    {
        const string key = "llama_proj.weight";
        var shape = ShapeOf(stage, key)
                    ?? throw new MiniGptWeightsException($"{stage.Description} has no {key}: it is not a MiniGPT stage checkpoint.", stage.Description, key);
        if (shape is not [> 0 and <= int.MaxValue, > 0 and <= int.MaxValue])
            throw new MiniGptWeightsException($"{key} in {stage.Description} has shape [{string.Join(", ", shape)}]; expected [out, in].", stage.Description, key);
        return ((int)shape[0], (int)shape[1]);
    }

    /// <summary>Fills <paramref name="model"/> from each source by its rules; disposes it and rethrows when one fails.</summary>
    protected static T Loaded<T>(T model, params (IWeightSource Source, LoadRules Rules)[] parts) where T : ProjectorModule
    {
        try
        {
            foreach (var (source, rules) in parts) ModuleLoader.Load(model, source, rules);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
