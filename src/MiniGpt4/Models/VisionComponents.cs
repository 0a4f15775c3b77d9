using MiniGpt4.Runtime;
using MiniGpt4.Abstractions;
using MiniGpt4.Bridge;
using MiniGpt4.Imaging;
using MiniGpt4.Vision;
using static TorchSharp.torch;

namespace MiniGpt4.Models;

/// <summary><see cref="IVisionEncoder"/> over EVA-ViT-g with the reference's preprocessing.</summary>
internal sealed class EvaVisionEncoder : IVisionEncoder
{
    private readonly EvaVisionTransformer _vit;
    private readonly ImageDecodingOptions _decoding;
    private readonly ScalarType _dtype;
    private readonly Device _device;
    private readonly ComputeGate _gate = new(nameof(EvaVisionEncoder));

    public EvaVisionEncoder(EvaVisionTransformer vit, int imageSize, ImageDecodingOptions decoding, ScalarType dtype, Device device)
    {
        _vit = vit; ImageSize = imageSize; _decoding = decoding; _dtype = dtype; _device = device;
    }

    /// <inheritdoc />
    public int ImageSize { get; }

    /// <inheritdoc />
    public VisionFeatures Encode(ImageInput image, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(image);
        ObjectDisposedException.ThrowIf(_gate.IsClosed, this);
        var pixels = ImagePreprocessor.ToPixelValues(image, ImageSize, _decoding);
        cancellationToken.ThrowIfCancellationRequested();
        return EncodePixels(pixels, cancellationToken);
    }

    /// <summary>Encodes already-normalised CHW pixel values <c>[3*S*S]</c>; cancellable between blocks.</summary>
    internal VisionFeatures EncodePixels(float[] pixelValues, CancellationToken cancellationToken = default) => _gate.Run(() =>
    {
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var x = tensor(pixelValues, new long[] { 1, 3, ImageSize, ImageSize }).to(_dtype, _device);
        var y = _vit.Encode(x, cancellationToken);
        return TorchHandles.Features(y.MoveToOuterDisposeScope());
    }, cancellationToken);

    /// <summary>Waits for an encoding in flight, then frees the weights; later calls throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose() => _gate.Close(_vit.Dispose);
}

/// <summary><see cref="IProjector"/> over the Q-Former or the concat projector (ln_vision included).</summary>
internal sealed class VisionProjector : IProjector
{
    private readonly IVisionProjector _inner;
    private readonly ComputeGate _gate = new(nameof(VisionProjector));

    public VisionProjector(IVisionProjector inner) => _inner = inner;

    /// <inheritdoc />
    public int TokensPerImage => _inner.TokensPerImage;

    /// <inheritdoc />
    public int OutputDim => _inner.OutputDim;

    /// <inheritdoc />
    public ImageEmbeddings Project(VisionFeatures features)
    {
        ArgumentNullException.ThrowIfNull(features);
        return _gate.Run(() =>
        {
            using var scope = NewDisposeScope();
            using var _ = inference_mode();
            return TorchHandles.Embeddings(_inner.Project(features.ToTorch()).MoveToOuterDisposeScope());
        });
    }

    /// <summary>Waits for a projection in flight, then frees the weights; later calls throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose() => _gate.Close(() => (_inner as IDisposable)?.Dispose());
}
