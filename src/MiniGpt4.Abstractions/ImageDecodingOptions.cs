using MiniGpt4.Imaging;

namespace MiniGpt4;

/// <summary>
/// Limits and choices for turning encoded images into RGB pixels. The defaults are safe for images
/// from untrusted sources and reproduce what the reference (PIL <c>Image.open(path).convert("RGB")</c>)
/// does: alpha dropped without compositing, grey expanded to RGB, EXIF orientation ignored.
/// </summary>
/// <remarks>
/// The limits (<see cref="MaxEncodedBytes"/>, <see cref="MaxPixels"/>, <see cref="MaxDimension"/>) hold
/// for every kind of <see cref="ImageInput"/> and every decoder, and are checked before anything the
/// size of the image is read, allocated or decoded: a file from its length, a stream from its length
/// or after at most <c>MaxEncodedBytes + 1</c> bytes, a size from the header's first bytes, RGB input
/// from its width and height. A refusal is a <see cref="MiniGptImageException"/> whose message names
/// the option and its value (docs/imaging.md lists the limits).
/// </remarks>
public sealed class ImageDecodingOptions
{
    /// <summary>The default pixel budget, 40 million pixels.</summary>
    /// <remarks>
    /// 40 MP is above every common camera and phone photo (a 12-48 MP sensor, an 8K frame of 33 MP)
    /// while capping the decoded RGB buffer at 120 MB, so a few concurrent requests cannot exhaust
    /// a server. The model only ever sees 224x224 or 448x448 pixels, so larger images add nothing.
    /// </remarks>
    public const long DefaultMaxPixels = 40_000_000;

    /// <summary>The default cap on the encoded size of an image (file, stream or bytes), 256 MiB.</summary>
    public const long DefaultMaxEncodedBytes = 256L * 1024 * 1024;

    /// <summary>The default cap on the width and on the height, 65,535 pixels.</summary>
    /// <remarks>
    /// The largest side a JPEG or GIF header can declare, and far above any camera. It bounds what the
    /// pixel budget alone does not: a 40,000,000 x 1 image is within 40 MP, but resizing it to 224 x 224
    /// needs bicubic weight tables of about 4 bytes x 4 x its width (640 MB); at 65,535 they stay near 1 MB.
    /// </remarks>
    public const int DefaultMaxDimension = 65_535;

    /// <summary>Shared instance with the default settings.</summary>
    public static ImageDecodingOptions Default { get; } = new();

    /// <summary>
    /// Largest accepted width x height. Checked on the header, before any pixel is decoded, so a
    /// decompression bomb (a small file declaring a huge image) is refused cheaply. Default
    /// <see cref="DefaultMaxPixels"/>.
    /// </summary>
    public long MaxPixels
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxPixels), value, "MaxPixels must be positive.");
    } = DefaultMaxPixels;

    /// <summary>
    /// Largest accepted encoded size in bytes, for file, stream and byte input. A file or seekable stream
    /// over it is refused from its length, without reading it; a stream that cannot seek is read no
    /// further than one byte past it. Default <see cref="DefaultMaxEncodedBytes"/>.
    /// </summary>
    public long MaxEncodedBytes
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxEncodedBytes), value, "MaxEncodedBytes must be positive.");
    } = DefaultMaxEncodedBytes;

    /// <summary>
    /// Largest accepted width and height, in pixels, declared or decoded (RGB input too). Checked with
    /// <see cref="MaxPixels"/>, before decoding. Default <see cref="DefaultMaxDimension"/>.
    /// </summary>
    public int MaxDimension
    {
        get;
        init => field = value > 0 ? value : throw new ArgumentOutOfRangeException(nameof(MaxDimension), value, "MaxDimension must be positive.");
    } = DefaultMaxDimension;

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
        get => field ?? BuiltInDecoder ?? LoadBuiltInDecoder() ?? throw new InvalidOperationException(
            "The built-in image decoder is part of the MiniGpt4 package, which is not referenced: reference MiniGpt4, or set Decoder.");
        init => field = value ?? throw new ArgumentNullException(nameof(Decoder));
    }

    /// <summary>The default decoder (ImageSharp), registered by the MiniGpt4 assembly when it loads.</summary>
    internal static IImageDecoder? BuiltInDecoder { get; set; }

    /// <summary>
    /// Options read before any MiniGpt4 type was touched: load that assembly (when the application references it) so
    /// that its module initializer registers the decoder. The abstractions never reference it at compile time.
    /// </summary>
    private static IImageDecoder? LoadBuiltInDecoder()
    {
        try
        {
            var module = System.Reflection.Assembly.Load("MiniGpt4").ManifestModule;
            System.Runtime.CompilerServices.RuntimeHelpers.RunModuleConstructor(module.ModuleHandle);
        }
        catch (IOException) { } // not referenced: the caller's error says so
        return BuiltInDecoder;
    }

    /// <summary>
    /// Refuses an image size over these limits: <see cref="MaxPixels"/>, <see cref="MaxDimension"/>, or
    /// more RGB pixels than one array can hold; also an empty size. An <see cref="IImageDecoder"/> calls it
    /// with the size its header reader found, before allocating pixels, so that it applies the same rule
    /// as the library (which calls it on every input).
    /// </summary>
    /// <param name="format">The image's format or kind, for the message (e.g. "PNG").</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <exception cref="MiniGptImageException">The size is empty or over a limit; the message names the limit and its value.</exception>
    public void ThrowIfOverLimits(string format, long width, long height)
        => ImageLimits.CheckSize(string.IsNullOrEmpty(format) ? "encoded" : format, width, height, this);

    /// <summary>
    /// Runs on complete encoded bytes the checks the library applies before any decoder sees them:
    /// <see cref="MaxEncodedBytes"/>, the format from the content (GIF and TIFF only when allowed), the
    /// size declared in the header against <see cref="MaxPixels"/> and <see cref="MaxDimension"/>, and
    /// that every part the container declares is present (a truncated file is refused). Reads only
    /// headers and lengths and allocates nothing the size of the image. An <see cref="IImageDecoder"/>
    /// that may be called directly calls it first.
    /// </summary>
    /// <param name="encoded">The complete encoded file.</param>
    /// <exception cref="MiniGptImageException">The bytes are refused; the message names the first problem.</exception>
    public void ThrowIfRefused(ReadOnlySpan<byte> encoded) => ImageLimits.CheckEncoded(encoded, this);
}
