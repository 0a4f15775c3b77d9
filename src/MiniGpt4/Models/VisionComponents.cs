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
    private readonly object _gate = new();

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
        var pixels = ImagePreprocessor.ToPixelValues(image, ImageSize, _decoding);
        cancellationToken.ThrowIfCancellationRequested();
        return EncodePixels(pixels);
    }

    /// <summary>Encodes already-normalised CHW pixel values <c>[3*S*S]</c>.</summary>
    internal VisionFeatures EncodePixels(float[] pixelValues)
    {
        lock (_gate)
        {
            using var scope = NewDisposeScope();
            using var _ = inference_mode();
            var x = tensor(pixelValues, new long[] { 1, 3, ImageSize, ImageSize }).to(_dtype, _device);
            var y = _vit.call(x);
            return new VisionFeatures(y.MoveToOuterDisposeScope());
        }
    }

    /// <inheritdoc />
    public void Dispose() => _vit.Dispose();
}

/// <summary><see cref="IProjector"/> over the Q-Former or the concat projector (ln_vision included).</summary>
internal sealed class VisionProjector : IProjector
{
    private readonly IVisionProjector _inner;
    private readonly object _gate = new();

    public VisionProjector(IVisionProjector inner) => _inner = inner;

    /// <inheritdoc />
    public int TokensPerImage => _inner.TokensPerImage;

    /// <inheritdoc />
    public int OutputDim => _inner.OutputDim;

    /// <inheritdoc />
    public ImageEmbeddings Project(VisionFeatures features)
    {
        ArgumentNullException.ThrowIfNull(features);
        lock (_gate)
        {
            using var scope = NewDisposeScope();
            using var _ = inference_mode();
            return new ImageEmbeddings(_inner.Project(features.Tensor).MoveToOuterDisposeScope());
        }
    }

    /// <inheritdoc />
    public void Dispose() => (_inner as IDisposable)?.Dispose();
}
