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
    /// <summary>Patches per side.</summary>
    public int GridSize => ImageSize / PatchSize;

    /// <summary>Number of patch tokens (without the class token).</summary>
    public int NumPatches => GridSize * GridSize;

    /// <summary>Tokens the ViT returns per image: class token plus patches.</summary>
    public int Tokens => 1 + NumPatches;

    /// <summary>Throws <see cref="MiniGptConfigurationException"/> when the numbers cannot describe an EVA ViT.</summary>
    public VisionConfig Validate()
    {
        void Require(bool ok, string what)
        {
            if (!ok) throw new MiniGptConfigurationException($"Invalid vision configuration {this}: {what}.");
        }
        Require(PatchSize > 0 && ImageSize > 0, "image and patch size must be positive");
        Require(ImageSize % PatchSize == 0, "the image size must be a multiple of the patch size");
        Require(Width > 0 && Heads > 0 && Width % Heads == 0, "the width must be a positive multiple of the head count");
        Require(Depth > 0, "the depth must be positive");
        Require(MlpHidden > 0, "the MLP hidden size must be positive");
        Require(Eps > 0, "the LayerNorm eps must be positive");
        return this;
    }
}
