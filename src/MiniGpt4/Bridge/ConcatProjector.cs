using MiniGpt4.Vision;
using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Bridge;

/// <summary>
/// The MiniGPT-4 (Llama-2) and MiniGPT-v2 bridge: ln_vision (weight 1, bias 0 unless the checkpoint holds it),
/// drop the class token, concatenate each run of <see cref="Group"/> consecutive patch tokens (row-major view
/// <c>[B, N/g, g*W]</c>), then <c>llama_proj</c>. The group size comes from <c>llama_proj.weight</c>'s input width
/// (4 in every release).
/// </summary>
internal sealed class ConcatProjector : nn.Module<Tensor, Tensor>, IVisionProjector
{
    private readonly VisionLayerNorm ln_vision;
    private readonly Linear llama_proj;

    public ConcatProjector(int visionWidth, int numPatches, int group, int outputDim, ScalarType dtype, Device device) : base(nameof(ConcatProjector))
    {
        if (visionWidth <= 0 || group <= 0 || outputDim <= 0 || numPatches <= 0 || numPatches % group != 0)
            throw new MiniGptConfigurationException(
                $"Concat projector: {numPatches} patches cannot be grouped by {group} (width {visionWidth}, output {outputDim}).");
        VisionWidth = visionWidth;
        NumPatches = numPatches;
        Group = group;
        DType = dtype;
        Device = device;
        OutputDim = outputDim;
        ln_vision = new VisionLayerNorm(visionWidth, device);
        llama_proj = EmptyInit.Linear((long)group * visionWidth, outputDim, true, dtype, device);
        RegisterComponents();
    }

    /// <summary>ViT width W.</summary>
    public int VisionWidth { get; }

    /// <summary>Patch tokens per image (without the class token).</summary>
    public int NumPatches { get; }

    /// <summary>Consecutive patch tokens concatenated into one image embedding.</summary>
    public int Group { get; }

    /// <summary>Dtype of the projection (ln_vision is always float32).</summary>
    public ScalarType DType { get; }

    /// <summary>Parameter device.</summary>
    public Device Device { get; }

    /// <inheritdoc/>
    public int TokensPerImage => NumPatches / Group;

    /// <inheritdoc/>
    public int OutputDim { get; }

    /// <inheritdoc/>
    public Tensor Project(Tensor visionTokens)
    {
        ProjectorInput.Check(visionTokens, VisionWidth, minTokens: 1 + NumPatches, exactTokens: true);
        using var _ = inference_mode();
        using var scope = NewDisposeScope();
        return forward(visionTokens.to(Device)).MoveToOuterDisposeScope(); // ln_vision sees the ViT's float32 tokens
    }

    /// <summary>ViT tokens -> <c>[B, N/g, OutputDim]</c>.</summary>
    public override Tensor forward(Tensor visionTokens)
    {
        using var scope = NewDisposeScope();
        return llama_proj.call(ProjectionInput(visionTokens)).MoveToOuterDisposeScope();
    }

    /// <summary>What <c>llama_proj</c> receives: <c>ln_vision(tokens)[:, 1:]</c> viewed <c>[B, N/g, g*W]</c>.</summary>
    public Tensor ProjectionInput(Tensor visionTokens)
    {
        using var scope = NewDisposeScope();
        var x = ln_vision.call(visionTokens).to(DType);
        var b = x.shape[0];
        var patches = x.narrow(1, 1, x.shape[1] - 1);
        return patches.reshape(b, (x.shape[1] - 1) / Group, Group * x.shape[2]).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Loads <c>llama_proj</c> (and ln_vision if the file happens to hold it) from a MiniGPT-4 Llama-2 stage-2
    /// or MiniGPT-v2 checkpoint; the LLM's keys in the same file (LoRA, rotary buffers) are skipped.
    /// </summary>
    public static ConcatProjector Load(string stagePath, VisionConfig vision, ScalarType dtype, Device device)
    {
        using var source = WeightFiles.Open(stagePath);
        return Load(source, vision, dtype, device);
    }

    /// <summary>Loads from an open weight source (see <see cref="Load(string, VisionConfig, ScalarType, Device)"/>).</summary>
    public static ConcatProjector Load(IWeightSource source, VisionConfig vision, ScalarType dtype, Device device)
    {
        vision.Validate();
        var (outDim, inDim) = ProjectorInput.LlamaProjShape(source, expectedIn: null, "");
        if (inDim % vision.Width != 0 || vision.NumPatches % (inDim / vision.Width) != 0)
            throw new MiniGptWeightsException(
                $"llama_proj.weight in {source.Description} takes {inDim} inputs, which is not a whole number of {vision.Width}-wide " +
                $"ViT tokens dividing the {vision.NumPatches} patches.", source.Description, "llama_proj.weight");
        var model = new ConcatProjector(vision.Width, vision.NumPatches, inDim / vision.Width, outDim, dtype, device);
        try
        {
            ModuleLoader.Load(model, source, new LoadRules
            {
                Ignore = QFormerProjector.Stage2Ignores,
                AllowMissing = ["ln_vision.weight", "ln_vision.bias"],
                Device = device,
            });
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }
}
