namespace MiniGpt4.Imaging;

/// <summary>
/// The reference's image pipeline (<c>Blip2ImageEvalProcessor</c> after <c>convert("RGB")</c>):
/// decode -> Pillow-exact bicubic resize to size x size (aspect ratio ignored) -> CLIP normalisation
/// -> float32 CHW.
/// </summary>
internal static class ImagePreprocessor
{
    /// <summary>The <c>[3 * size * size]</c> CHW pixel values the vision encoder takes for <paramref name="image"/>.</summary>
    /// <exception cref="MiniGptImageException">The image cannot be read, is refused or cannot be decoded.</exception>
    public static float[] ToPixelValues(ImageInput image, int size, ImageDecodingOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        var decoded = Decode(image, options); // first: a refused image costs no output buffer
        var resized = decoded.Width == size && decoded.Height == size
            ? decoded.Rgb24.Span // Pillow: a same-size resize is a copy
            : ResizeBicubic(decoded, size, size);
        var values = new float[checked(3 * size * size)];
        ClipNormalizer.ToChw(resized, values);
        return values;
    }

    /// <summary>Pillow-exact <c>resize((width, height), BICUBIC)</c> of RGB pixels; returns HWC uint8.</summary>
    public static byte[] ResizeBicubic(DecodedImage image, int width, int height)
        => PillowBicubicResampler.Resize(image.Rgb24.Span, image.Width, image.Height, width, height);

    /// <summary>
    /// Decodes <paramref name="image"/> to RGB24 with <paramref name="options"/> (RGB input is returned as is).
    /// Every input goes the same way: <see cref="ImageInput.Inspect"/> applies the limits to its length and
    /// header (or RGB size) before anything the size of the image is read or allocated; then the encoded
    /// bytes are read within <see cref="ImageDecodingOptions.MaxEncodedBytes"/>, checked whole
    /// (<see cref="EncodedImageInspector"/>), decoded, and the decoder's result is checked against the limits.
    /// </summary>
    public static DecodedImage Decode(ImageInput image, ImageDecodingOptions options)
    {
        ArgumentNullException.ThrowIfNull(image);
        ArgumentNullException.ThrowIfNull(options);
        try
        {
            ImageInputReader.Inspect(image, options);
            if (image.Kind == ImageInput.InputKind.Rgb) return new DecodedImage(image.Width, image.Height, image.Data);

            var encoded = ImageInputReader.ReadEncoded(image, options);
            // Every decoder gets bytes that passed the same checks (format, limits, completeness).
            var header = EncodedImageInspector.Inspect(encoded.Span, options);
            DecodedImage decoded;
            try
            {
                decoded = options.Decoder.Decode(encoded, options);
            }
            catch (Exception e) when (e is not MiniGptImageException and not OutOfMemoryException)
            {
                throw new MiniGptImageException($"The {EncodedImageInspector.Name(header.Format)} image could not be decoded: {e.Message}", e);
            }
            Validate(decoded, options);
            return decoded;
        }
        catch (MiniGptImageException e)
        {
            throw ImageInputReader.WithSource(image, e);
        }
    }

    private static void Validate(DecodedImage? d, ImageDecodingOptions options)
    {
        if (d is null) throw new MiniGptImageException("The decoder returned no image.");
        ImageLimits.CheckSize("decoded", d.Width, d.Height, options, "after decoding (the decoder returned a larger image than the header declared)");
        if (d.Rgb24.Length != (long)d.Width * d.Height * 3)
            throw new MiniGptImageException(
                $"The decoder returned {d.Rgb24.Length} bytes for {d.Width}x{d.Height} pixels; RGB24 needs {(long)d.Width * d.Height * 3}.");
    }
}
