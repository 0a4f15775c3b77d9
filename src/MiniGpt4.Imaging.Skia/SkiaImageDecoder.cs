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
        // Byte limit, format (GIF only when allowed), declared size and completeness, as for every decoder,
        // before Skia copies the bytes.
        options.ThrowIfRefused(encoded.Span);
        using var data = SKData.CreateCopy(encoded.Span);
        using var codec = SKCodec.Create(data) ?? throw Unrecognised(encoded.Span);
        string name = codec.EncodedFormat == SKEncodedImageFormat.Webp ? "WebP" : codec.EncodedFormat.ToString().ToUpperInvariant();
        if (codec.EncodedFormat is not (SKEncodedImageFormat.Jpeg or SKEncodedImageFormat.Png or SKEncodedImageFormat.Webp
                                        or SKEncodedImageFormat.Bmp or SKEncodedImageFormat.Gif))
            throw new MiniGptImageException($"{name} images are not supported (JPEG, PNG, WebP, BMP; GIF when allowed).");

        int width = codec.Info.Width, height = codec.Info.Height;
        // The size Skia will decode, which may differ from what the library's header walk read.
        options.ThrowIfOverLimits(name, width, height);
        if ((long)width * height * 4 > Array.MaxLength)
            throw new MiniGptImageException(string.Create(CultureInfo.InvariantCulture,
                $"The {name} image is {width}x{height} pixels: Skia's RGBA buffer would not fit in one .NET array; it was refused " +
                $"before decoding (lower ImageDecodingOptions.MaxPixels = {options.MaxPixels:N0})."));

        // Unpremultiplied RGBA without a colour space: the stored RGB values, no colour conversion.
        var target = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[checked(width * height * 4)];
        var result = codec.GetPixels(target, rgba);
        if (result == SKCodecResult.IncompleteInput)
            throw new MiniGptImageException($"Truncated {name} image: the data ends before the image is complete.");
        if (result != SKCodecResult.Success)
            throw new MiniGptImageException($"The {name} image could not be decoded: {result}.");
        return ToRgb(rgba, width, height, options.ApplyExifOrientation ? codec.EncodedOrigin : SKEncodedOrigin.TopLeft);
    }

    private static MiniGptImageException Unrecognised(ReadOnlySpan<byte> d)
    {
        // The bytes passed ThrowIfRefused: one starting with I or M is a TIFF.
        return d[0] is (byte)'I' or (byte)'M'
            ? new MiniGptImageException("TIFF images are not supported by the Skia decoder; use the default (ImageSharp) decoder with ImageDecodingOptions.AllowTiff = true.")
            : new MiniGptImageException($"Not a supported image: Skia does not recognise the data ({d.Length} bytes, starting {Convert.ToHexString(d[..Math.Min(8, d.Length)])}).");
    }

    /// <summary>RGBA -> RGB, applying an EXIF orientation (1-8) on the way.</summary>
    private static DecodedImage ToRgb(byte[] rgba, int width, int height, SKEncodedOrigin origin)
    {
        bool swap = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        int outW = swap ? height : width, outH = swap ? width : height;
        var rgb = new byte[checked(outW * outH * 3)];
        for (int y = 0, o = 0; y < outH; y++)
        {
            for (int x = 0; x < outW; x++, o += 3)
            {
                // Source pixel shown at (x, y) once the orientation is applied.
                var (sx, sy) = origin switch
                {
                    SKEncodedOrigin.TopRight => (width - 1 - x, y),
                    SKEncodedOrigin.BottomRight => (width - 1 - x, height - 1 - y),
                    SKEncodedOrigin.BottomLeft => (x, height - 1 - y),
                    SKEncodedOrigin.LeftTop => (y, x),
                    SKEncodedOrigin.RightTop => (y, height - 1 - x),
                    SKEncodedOrigin.RightBottom => (width - 1 - y, height - 1 - x),
                    SKEncodedOrigin.LeftBottom => (width - 1 - y, x),
                    _ => (x, y),
                };
                int s = (sy * width + sx) * 4;
                rgb[o] = rgba[s];
                rgb[o + 1] = rgba[s + 1];
                rgb[o + 2] = rgba[s + 2];
            }
        }
        return new DecodedImage(outW, outH, rgb);
    }
}
