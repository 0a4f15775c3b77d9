using System.Globalization;

namespace MiniGpt4.Imaging;

/// <summary>
/// The one place where the limits of <see cref="ImageDecodingOptions"/> are applied and worded: every
/// input kind, the header walk, both decoders and the check of a decoder's result go through it before
/// anything the size of the image is allocated. Each refusal names the option and its value.
/// </summary>
internal static class ImageLimits
{
    /// <summary>Largest pixel count whose RGB24 pixels (3 bytes each) fit in one .NET array.</summary>
    public const long MaxRgbPixels = 0x7FFFFFC7 / 3; // Array.MaxLength / 3

    /// <summary>Refuses an encoded input of known <paramref name="length"/> over <see cref="ImageDecodingOptions.MaxEncodedBytes"/>.</summary>
    /// <param name="length">The encoded size in bytes.</param>
    /// <param name="options">The limits.</param>
    /// <param name="when">How early it was refused, e.g. "from its length, without reading it".</param>
    public static void CheckEncodedBytes(long length, ImageDecodingOptions options, string when = "before decoding")
    {
        if (length > options.MaxEncodedBytes)
            throw new MiniGptImageException(F(
                "The encoded image is {0:N0} bytes, over ImageDecodingOptions.MaxEncodedBytes = {1:N0}; it was refused {2}.",
                length, options.MaxEncodedBytes, when));
        if (length > Array.MaxLength)
            throw new MiniGptImageException(F(
                "The encoded image is {0:N0} bytes, more than one .NET array can hold ({1:N0}); it was refused {2}.",
                length, Array.MaxLength, when));
    }

    /// <summary>The refusal of a stream without a length once more than <see cref="ImageDecodingOptions.MaxEncodedBytes"/> bytes came out of it.</summary>
    public static MiniGptImageException StreamOverByteLimit(long read, ImageDecodingOptions options)
        => new(F("The stream holds more than ImageDecodingOptions.MaxEncodedBytes = {0:N0} bytes; reading stopped after {1:N0} bytes.",
                 options.MaxEncodedBytes, read));

    /// <summary>
    /// Refuses a size over <see cref="ImageDecodingOptions.MaxPixels"/> (all <paramref name="frames"/> counted),
    /// over <see cref="ImageDecodingOptions.MaxDimension"/>, or too large for one RGB24 array.
    /// </summary>
    /// <param name="what">The kind of image for the message ("PNG", "RGB", "decoded").</param>
    /// <param name="width">Width in pixels.</param>
    /// <param name="height">Height in pixels.</param>
    /// <param name="options">The limits.</param>
    /// <param name="when">How early it was refused, e.g. "before decoding".</param>
    /// <param name="frames">Frames that would all be decoded (animated WebP), each charged to the budget.</param>
    public static void CheckSize(string what, long width, long height, ImageDecodingOptions options,
                                 string when = "before decoding", long frames = 1)
    {
        if (width <= 0 || height <= 0)
            throw new MiniGptImageException(F("Invalid {0} image: it declares an empty size {1}x{2}.", what, width, height));
        long maxPixels = options.MaxPixels;
        if (height > maxPixels / width)
            throw new MiniGptImageException(F(
                "The {0} image is {1}x{2} = {3:N0} pixels, over the pixel budget ImageDecodingOptions.MaxPixels = {4:N0}; " +
                "it was refused {5}. Raise MaxPixels only for trusted images.",
                what, width, height, (Int128)width * height, maxPixels, when));
        long maxSide = options.MaxDimension;
        if (width > maxSide || height > maxSide)
            throw new MiniGptImageException(F(
                "The {0} image is {1}x{2} pixels: its {3} {4:N0} is over ImageDecodingOptions.MaxDimension = {5:N0}; " +
                "it was refused {6}. Raise MaxDimension only for trusted images.",
                what, width, height, width > maxSide ? "width" : "height", Math.Max(width, height), maxSide, when));
        if (frames > 1 && (Int128)height * frames > maxPixels / width)
            throw new MiniGptImageException(F(
                "The animated {0} image has {1} frames of {2}x{3} pixels, all of which would be decoded: " +
                "over the pixel budget ImageDecodingOptions.MaxPixels = {4:N0}; it was refused {5}.",
                what, frames, width, height, maxPixels, when));
        if (width * height > MaxRgbPixels)
            throw new MiniGptImageException(F(
                "The {0} image is {1}x{2} = {3:N0} pixels: its RGB pixels would not fit in one .NET array " +
                "(at most {4:N0} pixels), whatever ImageDecodingOptions.MaxPixels = {5:N0} allows; it was refused {6}.",
                what, width, height, width * height, MaxRgbPixels, maxPixels, when));
    }

    /// <summary>All checks on complete encoded bytes: the byte limit, then <see cref="EncodedImageInspector.Inspect"/>.</summary>
    public static EncodedImageHeader CheckEncoded(ReadOnlySpan<byte> encoded, ImageDecodingOptions options)
    {
        CheckEncodedBytes(encoded.Length, options);
        return EncodedImageInspector.Inspect(encoded, options);
    }

    private static string F(string format, params object[] args) => string.Format(CultureInfo.InvariantCulture, format, args);
}
