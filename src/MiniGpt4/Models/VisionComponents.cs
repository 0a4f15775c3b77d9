using MiniGpt4.Runtime;
using MiniGpt4.Abstractions;
using MiniGpt4.Bridge;
using MiniGpt4.Imaging;
using MiniGpt4.Vision;
using static TorchSharp.torch;

namespace MiniGpt4.Models;

/// <summary><see cref="IVisionEncoder"/> over EVA-ViT-g with the reference's preprocessing.</summary>
internal sealed class EvaVisionEncoder(EvaVisionTransformer vit, ImageDecodingOptions decoding) : IVisionEncoder
{
    private readonly ComputeGate _gate = new(nameof(EvaVisionEncoder));

    /// <summary>The transformer (read by the model identity of saved conversations).</summary>
    internal EvaVisionTransformer Module => vit;

    /// <inheritdoc />
    public int ImageSize => vit.Config.ImageSize;

    /// <inheritdoc />
    public VisionFeatures Encode(ImageInput image, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(image);
        ObjectDisposedException.ThrowIf(_gate.IsClosed, this);
        var pixels = ImagePreprocessor.ToPixelValues(image, ImageSize, decoding);
        return _gate.Run(() =>
        {
            using var x = tensor(pixels, new long[] { 1, 3, ImageSize, ImageSize });
            return TorchHandles.Features(vit.Encode(x, cancellationToken)); // cancellable between blocks
        }, cancellationToken);
    }

    /// <summary>Waits for an encoding in flight, then frees the weights; later calls throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose() => _gate.Close(vit.Dispose);
}

/// <summary><see cref="IProjector"/> over the Q-Former or the concat projector (ln_vision included).</summary>
internal sealed class VisionProjector(ProjectorModule inner) : IProjector
{
    private readonly ComputeGate _gate = new(nameof(VisionProjector));

    /// <summary>The projection modules (read by the model identity of saved conversations).</summary>
    internal ProjectorModule Module => inner;

    /// <inheritdoc />
    public int TokensPerImage => inner.TokensPerImage;

    /// <inheritdoc />
    public int OutputDim => inner.OutputDim;

    /// <inheritdoc />
    public ImageEmbeddings Project(VisionFeatures features)
    {
        ArgumentNullException.ThrowIfNull(features);
        return _gate.Run(() => TorchHandles.Embeddings(inner.Project(features.ToTorch())));
    }

    /// <summary>Waits for a projection in flight, then frees the weights; later calls throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose() => _gate.Close(inner.Dispose);
}
