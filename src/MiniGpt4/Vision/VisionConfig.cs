using MiniGpt4.Weights;

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
    /// <summary>Largest input size accepted (the released models use 224 and 448 pixels).</summary>
    public const int MaxImageSize = 1024;

    /// <summary>Largest number of patches per image accepted (448 px at patch 14 is 1024).</summary>
    public const int MaxPatches = 1 << 14;

    /// <summary>Largest width accepted (EVA-ViT-g: 1408).</summary>
    public const int MaxWidth = 1 << 14;

    /// <summary>Largest depth accepted (EVA-ViT-g: 40 blocks).</summary>
    public const int MaxDepth = 256;

    /// <summary>Largest MLP hidden size accepted (EVA-ViT-g: 6144).</summary>
    public const int MaxMlpHidden = 1 << 16;

    /// <summary>Patches per side.</summary>
    public int GridSize => ImageSize / PatchSize;

    /// <summary>Number of patch tokens (without the class token).</summary>
    public int NumPatches => GridSize * GridSize;

    /// <summary>Tokens the ViT returns per image: class token plus patches.</summary>
    public int Tokens => 1 + NumPatches;

    /// <summary>Throws <see cref="MiniGptConfigurationException"/> when the numbers cannot describe an EVA ViT or are out of bounds.</summary>
    public VisionConfig Validate()
    {
        void Require(bool ok, string what)
        {
            if (!ok) throw new MiniGptConfigurationException($"Invalid vision configuration {this}: {what}.");
        }
        Require(PatchSize > 0 && ImageSize > 0, "image and patch size must be positive");
        Require(ImageSize <= MaxImageSize, $"the image size must be at most {MaxImageSize}");
        Require(ImageSize % PatchSize == 0, "the image size must be a multiple of the patch size");
        Require(NumPatches <= MaxPatches, $"at most {MaxPatches} patches per image");
        Require(Width > 0 && Heads > 0 && Width % Heads == 0, "the width must be a positive multiple of the head count");
        Require(Width <= MaxWidth, $"the width must be at most {MaxWidth}");
        Require(Depth > 0 && Depth <= MaxDepth, $"the depth must be between 1 and {MaxDepth}");
        Require(MlpHidden > 0 && MlpHidden <= MaxMlpHidden, $"the MLP hidden size must be between 1 and {MaxMlpHidden}");
        Require(Eps > 0 && double.IsFinite(Eps), "the LayerNorm eps must be positive and finite");
        return this;
    }

    /// <summary>
    /// Checks this configuration against the shapes of an EVA ViT checkpoint in LAVIS naming
    /// (<see cref="EvaVitNames.ToLavis"/>; headers only, no tensor data): the file must hold at least
    /// <see cref="Depth"/> blocks, <c>patch_embed.proj.weight</c> must be <c>[width, 3, patch, patch]</c>,
    /// <c>pos_embed</c> <c>[1, 1 + g*g, width]</c> for some grid g, and every used block's
    /// projections and norms must have the shapes width and mlp_hidden imply. Throws
    /// <see cref="MiniGptWeightsException"/> naming the file, the key and <paramref name="who"/>'s fields
    /// (e.g. the manifest's <c>vision.width</c>).
    /// </summary>
    public void CheckAgainst(IWeightSource lavisView, string who)
    {
        ArgumentNullException.ThrowIfNull(lavisView);
        Validate();
        var file = lavisView.Description;
        var fileDepth = EvaVitNames.BlockCount(lavisView.Keys);
        if (fileDepth < Depth)
            throw new MiniGptWeightsException(
                $"{file}: {who} says vision.depth = {Depth}, but the checkpoint holds {fileDepth} ViT block{(fileDepth == 1 ? "" : "s")}.", file, "blocks");
        long w = Width, mlp = MlpHidden;
        var width = $"{who}: vision.width = {Width}";
        WeightShapes.Expect(lavisView, "patch_embed.proj.weight", [w, 3, PatchSize, PatchSize], $"{width}, vision.patch_size = {PatchSize}");
        WeightShapes.Expect(lavisView, "cls_token", [1, 1, w], width);
        var pos = WeightShapes.ShapeOf(lavisView, "pos_embed")
                  ?? throw new MiniGptWeightsException($"{file}: missing key 'pos_embed'.", file, "pos_embed");
        if (pos.Length != 3 || pos[0] != 1 || PositionEmbedding.GridOf(pos[1]) <= 0 || pos[2] != w)
            throw new MiniGptWeightsException(
                $"{file}: shape mismatch for 'pos_embed': {width} implies [1, 1 + g*g, {w}], the file has {DTypes.FormatShape(pos)}.", file, "pos_embed");
        var mlpWhy = $"{width}, vision.mlp_hidden = {MlpHidden}";
        for (var i = 0; i < Depth; i++)
        {
            var p = $"blocks.{i}.";
            WeightShapes.Expect(lavisView, p + "norm1.weight", [w], width);
            WeightShapes.Expect(lavisView, p + "attn.qkv.weight", [3 * w, w], width);
            WeightShapes.Expect(lavisView, p + "attn.proj.weight", [w, w], width);
            WeightShapes.Expect(lavisView, p + "norm2.weight", [w], width);
            WeightShapes.Expect(lavisView, p + "mlp.fc1.weight", [mlp, w], mlpWhy);
            WeightShapes.Expect(lavisView, p + "mlp.fc2.weight", [w, mlp], mlpWhy);
        }
    }
}
