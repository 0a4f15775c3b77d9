using static TorchSharp.torch;

namespace MiniGpt4.Bridge;

/// <summary>
/// Turns ViT output tokens into the image embeddings spliced into the LLM prompt. Implementations apply
/// ln_vision themselves.
/// </summary>
internal interface IVisionProjector
{
    /// <summary>
    /// ViT tokens <c>[B, 1 + N, W]</c> (class token first; any float dtype, float32 as the ViT returns them;
    /// any device, moved to the projector's) -> image embeddings <c>[B, TokensPerImage, OutputDim]</c> in the
    /// projector's dtype. ln_vision is computed in float32 before the cast. Runs under inference mode; the
    /// caller owns the result.
    /// </summary>
    Tensor Project(Tensor visionTokens);

    /// <summary>Image embeddings produced per image.</summary>
    int TokensPerImage { get; }

    /// <summary>Width of each image embedding (the LLM hidden size).</summary>
    int OutputDim { get; }
}
