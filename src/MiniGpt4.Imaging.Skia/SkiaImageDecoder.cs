using System.Globalization;
using SkiaSharp;

namespace MiniGpt4.Imaging.Skia;

/// <summary>
/// Decodes images with SkiaSharp (Skia's codecs: libjpeg-turbo, libpng, libwebp). Its JPEG output
/// equals Pillow's (which also uses libjpeg-turbo with the same IDCT and upsampling), so images go
/// through the whole preprocessing bit for bit like the reference. Use it with
/// <c>new ImageDecodingOptions { Decoder = SkiaImageDecoder.Instance }</c>.
/// Formats: JPEG, PNG, WebP, BMP, and GIF (first frame) when <see cref="ImageDecodingOptions.AllowGif"/>
/// is set; Skia has no TIFF decoder. No colour management is applied (as in PIL); alpha is dropped
/// without compositing. The limits of <see cref="ImageDecodingOptions"/> are applied the library's way
/// (<see cref="ImageDecodingOptions.ThrowIfRefused"/> on the bytes, then
/// <see cref="ImageDecodingOptions.ThrowIfOverLimits"/> on the size Skia reads) before any pixel buffer
/// is allocated, also when the decoder is called directly.
/// </summary>
public sealed class SkiaImageDecoder : IImageDecoder
{
    private SkiaImageDecoder() { }

    /// <summary>The shared instance (the decoder keeps no state).</summary>
    public static SkiaImageDecoder Instance { get; } = new();

    /// <inheritdoc />
    public DecodedImage Decode(ReadOnlyMemory<byte> encoded, ImageDecodingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        // Byte limit, format, declared size and completeness, as for every decoder, before Skia copies the bytes.
        options.ThrowIfRefused(encoded.Span);
        using var data = SKData.CreateCopy(encoded.Span);
        using var codec = SKCodec.Create(data) ?? throw Unrecognised(encoded.Span);

        var format = codec.EncodedFormat;
        switch (format)
        {
            case SKEncodedImageFormat.Jpeg or SKEncodedImageFormat.Png or SKEncodedImageFormat.Webp or SKEncodedImageFormat.Bmp:
                break;
            case SKEncodedImageFormat.Gif when options.AllowGif:
                break;
            case SKEncodedImageFormat.Gif:
                throw new MiniGptImageException("GIF images are refused by default; set ImageDecodingOptions.AllowGif = true to accept them.");
            default:
                throw new MiniGptImageException($"{format} images are not supported (JPEG, PNG, WebP, BMP; GIF when allowed).");
        }

        var info = codec.Info;
        int width = info.Width, height = info.Height;
        if (width <= 0 || height <= 0)
            throw new MiniGptImageException($"Invalid {format} image: its header declares an empty size {width}x{height}.");
        // The size Skia will decode, which may differ from what the library's header walk read.
        options.ThrowIfOverLimits(Name(format), width, height);
        if ((long)width * height * 4 > Array.MaxLength)
            throw new MiniGptImageException(string.Format(CultureInfo.InvariantCulture,
                "The {0} image is {1}x{2} pixels: Skia's RGBA buffer ({3:N0} bytes) would not fit in one .NET array; " +
                "it was refused before decoding (lower ImageDecodingOptions.MaxPixels = {4:N0}).",
                Name(format), width, height, (long)width * height * 4, options.MaxPixels));

        // Unpremultiplied RGBA without a colour space: the stored RGB values, no colour conversion.
        var target = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[checked(width * height * 4)];
        SKCodecResult result;
        unsafe
        {
            fixed (byte* p = rgba) result = codec.GetPixels(target, (IntPtr)p);
        }
        if (result == SKCodecResult.IncompleteInput)
            throw new MiniGptImageException($"Truncated {format} image: the data ends before the image is complete.");
        if (result != SKCodecResult.Success)
            throw new MiniGptImageException($"The {format} image could not be decoded: {result}.");

        var origin = options.ApplyExifOrientation ? codec.EncodedOrigin : SKEncodedOrigin.TopLeft;
        return Orientation.ToRgb(rgba, width, height, origin);
    }

    private static string Name(SKEncodedImageFormat format) => format switch
    {
        SKEncodedImageFormat.Jpeg => "JPEG",
        SKEncodedImageFormat.Png => "PNG",
        SKEncodedImageFormat.Webp => "WebP",
        SKEncodedImageFormat.Bmp => "BMP",
        SKEncodedImageFormat.Gif => "GIF",
        _ => format.ToString(),
    };

    private static MiniGptImageException Unrecognised(ReadOnlySpan<byte> d)
    {
        bool tiff = d.Length >= 4 && ((d[0] == 'I' && d[1] == 'I' && d[3] == 0) || (d[0] == 'M' && d[1] == 'M' && d[2] == 0));
        return tiff
            ? new MiniGptImageException("TIFF images are not supported by the Skia decoder; use the default (ImageSharp) decoder with ImageDecodingOptions.AllowTiff = true.")
            : new MiniGptImageException($"Not a supported image: Skia does not recognise the data ({d.Length} bytes, starting {Convert.ToHexString(d[..Math.Min(8, d.Length)])}).");
    }
}
