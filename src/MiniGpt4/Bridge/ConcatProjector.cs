using MiniGpt4.Vision;
using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Bridge;

/// <summary>
/// The MiniGPT-4 (Llama-2) and MiniGPT-v2 bridge: ln_vision (weight 1, bias 0 unless the checkpoint holds it),
/// drop the class token, concatenate each run of <see cref="Group"/> consecutive patch tokens (row-major view
/// <c>[B, N/g, g*W]</c>), then <c>llama_proj</c>. The group size comes from <c>llama_proj.weight</c>'s input width
/// (4 in every release).
/// </summary>
internal sealed class ConcatProjector : ProjectorModule
{
    public ConcatProjector(int visionWidth, int numPatches, int group, int outputDim, ScalarType dtype, Device device)
        : base(nameof(ConcatProjector), visionWidth, group * visionWidth, outputDim, dtype, device)
    {
        NumPatches = numPatches;
        Group = group;
        RegisterComponents();
    }

    /// <summary>Patch tokens per image (without the class token).</summary>
    public int NumPatches { get; }

    /// <summary>Consecutive patch tokens concatenated into one image embedding.</summary>
    public int Group { get; }

    /// <inheritdoc/>
    public override int TokensPerImage => NumPatches / Group;

    /// <inheritdoc/>
    protected override int? RequiredTokens => 1 + NumPatches;

    /// <summary><c>ln_vision(tokens)[:, 1:]</c> viewed <c>[B, N/g, g*W]</c>.</summary>
    public override Tensor ProjectionInput(Tensor visionTokens)
    {
        var patches = LnVision(visionTokens).narrow(1, 1, NumPatches);
        return patches.reshape(patches.shape[0], TokensPerImage, Group * VisionWidth);
    }

    /// <summary>
    /// Loads <c>llama_proj</c> (and ln_vision if the file happens to hold it) from a MiniGPT-4 Llama-2 stage-2
    /// or MiniGPT-v2 checkpoint; the LLM's keys in the same file (LoRA, rotary buffers) are skipped.
    /// </summary>
    public static ConcatProjector Load(IWeightSource stage, VisionConfig vision, ScalarType dtype, Device device)
    {
        vision.Validate();
        var (outDim, inDim) = LlamaProjShape(stage);
        if (inDim % vision.Width != 0 || vision.NumPatches % (inDim / vision.Width) != 0)
            throw new MiniGptWeightsException(
                $"llama_proj.weight in {stage.Description} takes {inDim} inputs, which is not a whole number of {vision.Width}-wide " +
                $"ViT tokens dividing the {vision.NumPatches} patches.", stage.Description, "llama_proj.weight");
        return Loaded(new ConcatProjector(vision.Width, vision.NumPatches, inDim / vision.Width, outDim, dtype, device),
            (stage, new LoadRules { Ignore = Stage2Ignores, AllowMissing = ["ln_vision.weight", "ln_vision.bias"] }));
    }
}
