using System.Globalization;
using System.Runtime.CompilerServices;

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
            throw Refusal(Invariant, $"The encoded image is {length:N0} bytes, over ImageDecodingOptions.MaxEncodedBytes = " +
                                     $"{options.MaxEncodedBytes:N0}; it was refused {when}.");
        if (length > Array.MaxLength)
            throw Refusal(Invariant, $"The encoded image is {length:N0} bytes, more than one .NET array can hold " +
                                     $"({Array.MaxLength:N0}); it was refused {when}.");
    }

    /// <summary>The refusal of a stream without a length once more than <see cref="ImageDecodingOptions.MaxEncodedBytes"/> bytes came out of it.</summary>
    public static MiniGptImageException StreamOverByteLimit(long read, ImageDecodingOptions options)
        => Refusal(Invariant, $"The stream holds more than ImageDecodingOptions.MaxEncodedBytes = {options.MaxEncodedBytes:N0} bytes; " +
                              $"reading stopped after {read:N0} bytes.");

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
            throw Refusal(Invariant, $"Invalid {what} image: it declares an empty size {width}x{height}.");
        long maxPixels = options.MaxPixels, maxSide = options.MaxDimension;
        if (height > maxPixels / width)
            throw Refusal(Invariant, $"The {what} image is {width}x{height} = {(Int128)width * height:N0} pixels, over the pixel " +
                                     $"budget ImageDecodingOptions.MaxPixels = {maxPixels:N0}; it was refused {when}. " +
                                     $"Raise MaxPixels only for trusted images.");
        if (width > maxSide || height > maxSide)
            throw Refusal(Invariant, $"The {what} image is {width}x{height} pixels: its {(width > maxSide ? "width" : "height")} " +
                                     $"{Math.Max(width, height):N0} is over ImageDecodingOptions.MaxDimension = {maxSide:N0}; " +
                                     $"it was refused {when}. Raise MaxDimension only for trusted images.");
        if (frames > 1 && (Int128)height * frames > maxPixels / width)
            throw Refusal(Invariant, $"The animated {what} image has {frames} frames of {width}x{height} pixels, all of which " +
                                     $"would be decoded: over the pixel budget ImageDecodingOptions.MaxPixels = {maxPixels:N0}; " +
                                     $"it was refused {when}.");
        if (width * height > MaxRgbPixels)
            throw Refusal(Invariant, $"The {what} image is {width}x{height} = {width * height:N0} pixels: its RGB pixels would " +
                                     $"not fit in one .NET array (at most {MaxRgbPixels:N0} pixels), whatever " +
                                     $"ImageDecodingOptions.MaxPixels = {maxPixels:N0} allows; it was refused {when}.");
    }

    /// <summary>All checks on complete encoded bytes: the byte limit, then <see cref="EncodedImageInspector.Inspect"/>.</summary>
    public static EncodedImageHeader CheckEncoded(ReadOnlySpan<byte> encoded, ImageDecodingOptions options)
    {
        CheckEncodedBytes(encoded.Length, options);
        return EncodedImageInspector.Inspect(encoded, options);
    }

    private static readonly CultureInfo Invariant = CultureInfo.InvariantCulture;

    /// <summary>A refusal whose numbers read the same everywhere: 40,000,000.</summary>
    private static MiniGptImageException Refusal(IFormatProvider provider,
        [InterpolatedStringHandlerArgument(nameof(provider))] ref DefaultInterpolatedStringHandler message) => new(message.ToStringAndClear());
}
