using MiniGpt4.Weights;
using static MiniGpt4.Weights.WeightShapes;

namespace MiniGpt4.Vision;

/// <summary>
/// Shape of the EVA ViT. The defaults are the BLIP-2 EVA-ViT-g as MiniGPT-4 instantiates it
/// (224 px, patch 14, width 1408, 39 of the file's 40 blocks, 16 heads, MLP 6144, LayerNorm eps 1e-6).
/// </summary>
internal sealed record VisionConfig(
    int ImageSize = 224,
    int PatchSize = 14,
    int Width = 1408,
    int Depth = 39,
    int Heads = 16,
    int MlpHidden = 6144,
    double Eps = 1e-6)
{
    public int GridSize => ImageSize / PatchSize;

    public int NumPatches => GridSize * GridSize;

    public int Tokens => 1 + NumPatches;

    /// <summary>
    /// Throws <see cref="MiniGptConfigurationException"/>, naming <paramref name="where"/> and the manifest field, when the
    /// numbers cannot describe an EVA ViT or are out of bounds.
    /// </summary>
    public VisionConfig Validate(string where = "vision configuration")
    {
        const int maxPatches = 1 << 14;                          // 448 px at patch 14: 1024
        var check = new ConfigCheck(where);
        check.InRange("vision.image_size", ImageSize, 1024);     // the released models: 224 and 448
        check.InRange("vision.patch_size", PatchSize, ImageSize);
        check.Require(ImageSize % PatchSize == 0, $"vision.image_size {ImageSize} is not a multiple of vision.patch_size {PatchSize}");
        check.Require(NumPatches <= maxPatches, $"vision.image_size {ImageSize} at vision.patch_size {PatchSize} gives {NumPatches} patches, over the limit of {maxPatches}");
        check.InRange("vision.width", Width, 1 << 14);           // EVA-ViT-g: 1408
        check.InRange("vision.heads", Heads, Width);
        check.Require(Width % Heads == 0, $"vision.width {Width} is not a multiple of vision.heads {Heads}");
        check.InRange("vision.depth", Depth, 256);               // EVA-ViT-g: 40 blocks
        check.InRange("vision.mlp_hidden", MlpHidden, 1 << 16);  // EVA-ViT-g: 6144
        check.Positive("LayerNorm eps", Eps);
        return this;
    }

    /// <summary>
    /// Checks the block count (at least <see cref="Depth"/>) and the shape of every tensor the ViT would allocate against
    /// an EVA ViT checkpoint's headers in LAVIS naming (<see cref="EvaVitNames.ToLavis"/>; <c>pos_embed</c> may have any
    /// square grid). Throws <see cref="MiniGptWeightsException"/> naming the file, the key and <paramref name="who"/>'s fields.
    /// </summary>
    public void CheckAgainst(IWeightSource lavisView, string who)
    {
        Validate(who);
        var file = lavisView.Description;
        var fileDepth = CountIndexed(lavisView.Keys, "blocks.");
        if (fileDepth < Depth)
            throw new MiniGptWeightsException(
                $"{file}: {who} says vision.depth = {Depth}, but the checkpoint holds {fileDepth} ViT block{(fileDepth == 1 ? "" : "s")}.", file, "blocks");
        long w = Width, mlp = MlpHidden;
        var width = $"{who}: vision.width = {Width}";
        Expect(lavisView, "patch_embed.proj.weight", [w, 3, PatchSize, PatchSize], $"{width}, vision.patch_size = {PatchSize}");
        Expect(lavisView, "cls_token", [1, 1, w], width);
        var pos = ShapeOf(lavisView, "pos_embed")
                  ?? throw new MiniGptWeightsException($"{file}: missing key 'pos_embed'.", file, "pos_embed");
        if (pos.Length != 3 || pos[0] != 1 || PositionEmbedding.GridOf(pos[1]) <= 0 || pos[2] != w)
            throw new MiniGptWeightsException(
                $"{file}: shape mismatch for 'pos_embed': {width} implies [1, 1 + g*g, {w}], the file has {DTypes.FormatShape(pos)}.", file, "pos_embed");
        var mlpWhy = $"{width}, vision.mlp_hidden = {MlpHidden}";
        for (var i = 0; i < Depth; i++)
        {
            var p = $"blocks.{i}.";
            Expect(lavisView, p + "norm1.weight", [w], width);
            Expect(lavisView, p + "attn.qkv.weight", [3 * w, w], width);
            Expect(lavisView, p + "attn.proj.weight", [w, w], width);
            Expect(lavisView, p + "norm2.weight", [w], width);
            Expect(lavisView, p + "mlp.fc1.weight", [mlp, w], mlpWhy);
            Expect(lavisView, p + "mlp.fc2.weight", [w, mlp], mlpWhy);
        }
    }
}
