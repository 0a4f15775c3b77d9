using MiniGpt4.Imaging;

namespace MiniGpt4;

/// <summary>
/// Limits and choices for turning encoded images into RGB pixels. The defaults are safe for images
/// from untrusted sources and reproduce what the reference (PIL <c>Image.open(path).convert("RGB")</c>)
/// does: alpha dropped without compositing, grey expanded to RGB, EXIF orientation ignored.
/// </summary>
public sealed class ImageDecodingOptions
{
    /// <summary>The default pixel budget, 40 million pixels.</summary>
    /// <remarks>
    /// 40 MP is above every common camera and phone photo (a 12-48 MP sensor, an 8K frame of 33 MP)
    /// while capping the decoded RGB buffer at 120 MB, so a few concurrent requests cannot exhaust
    /// a server. The model only ever sees 224x224 or 448x448 pixels, so larger images add nothing.
    /// </remarks>
    public const long DefaultMaxPixels = 40_000_000;

    /// <summary>The default cap on the encoded size read from a file or stream, 256 MiB.</summary>
    public const long DefaultMaxEncodedBytes = 256L * 1024 * 1024;

    /// <summary>Shared instance with the default settings.</summary>
    public static ImageDecodingOptions Default { get; } = new();

    /// <summary>
    /// Largest accepted width x height. Checked on the header, before any pixel is decoded, so a
    /// decompression bomb (a small file declaring a huge image) is refused cheaply. Default
    /// <see cref="DefaultMaxPixels"/>.
    /// </summary>
    public long MaxPixels
    {
        get => _maxPixels;
        init => _maxPixels = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxPixels), value, "MaxPixels must be positive.");
    }
    private readonly long _maxPixels = DefaultMaxPixels;

    /// <summary>Largest accepted encoded size for file and stream input. Default <see cref="DefaultMaxEncodedBytes"/>.</summary>
    public long MaxEncodedBytes
    {
        get => _maxEncodedBytes;
        init => _maxEncodedBytes = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxEncodedBytes), value, "MaxEncodedBytes must be positive.");
    }
    private readonly long _maxEncodedBytes = DefaultMaxEncodedBytes;

    /// <summary>
    /// Accept GIF images (the first frame is used). Off by default: the GIF decoder of ImageSharp
    /// 2.1 had several advisories (out-of-bounds writes, excessive allocation, an infinite loop).
    /// </summary>
    public bool AllowGif { get; init; }

    /// <summary>
    /// Accept TIFF images (the first page is used). Off by default: an out-of-bounds write in
    /// ImageSharp's TIFF decoder was fixed only in 3.x, and the 2.1 line may be affected.
    /// </summary>
    public bool AllowTiff { get; init; }

    /// <summary>
    /// Rotate/flip the image as its EXIF orientation tag says. Off by default, as in the reference
    /// (PIL does not apply EXIF orientation), so the model sees the same pixels.
    /// </summary>
    public bool ApplyExifOrientation { get; init; }

    /// <summary>
    /// The decoder. Default: the built-in ImageSharp decoder (managed code). Package
    /// MiniGpt4.Imaging.Skia offers a SkiaSharp (libjpeg-turbo) decoder whose JPEG output equals
    /// Pillow's bit for bit.
    /// </summary>
    public IImageDecoder Decoder
    {
        get => _decoder;
        init => _decoder = value ?? throw new ArgumentNullException(nameof(Decoder));
    }
    private readonly IImageDecoder _decoder = ImageSharpDecoder.Instance;
}
