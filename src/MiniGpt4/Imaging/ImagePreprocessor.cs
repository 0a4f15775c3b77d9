namespace MiniGpt4.Imaging;

/// <summary>
/// The reference's image pipeline (<c>Blip2ImageEvalProcessor</c> after <c>convert("RGB")</c>):
/// decode -> Pillow-exact bicubic resize to size x size (aspect ratio ignored) -> CLIP normalisation
/// -> float32 CHW. The normalisation is torchvision's <c>ToTensor</c> then <c>Normalize</c> in their
/// float32 operation order, <c>(x / 255f - mean) / std</c>, which reproduces the reference bit for bit.
/// </summary>
internal static class ImagePreprocessor
{
    private static readonly float[] ClipMean = [0.48145466f, 0.4578275f, 0.40821073f];
    private static readonly float[] ClipStd = [0.26862954f, 0.26130258f, 0.27577711f];

    /// <summary>The 256 normalised values per channel (<c>[channel * 256 + value]</c>), computed with the exact float32 operations.</summary>
    private static readonly float[] Normalised = BuildNormalised();

    /// <summary>The <c>[3 * size * size]</c> CHW pixel values the vision encoder takes for <paramref name="image"/>.</summary>
    /// <exception cref="MiniGptImageException">The image cannot be read, is refused or cannot be decoded.</exception>
    public static float[] ToPixelValues(ImageInput image, int size, ImageDecodingOptions options)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        var decoded = Decode(image, options); // first: a refused image costs no output buffer
        var resized = decoded.Width == size && decoded.Height == size
            ? decoded.Rgb24.Span // Pillow: a same-size resize is a copy
            : ResizeBicubic(decoded, size, size);
        // HWC uint8 -> CHW float32: planes R, G, B.
        var values = new float[checked(3 * size * size)];
        int pixels = size * size;
        for (int c = 0; c < 3; c++)
        {
            var plane = values.AsSpan(c * pixels, pixels);
            var table = Normalised.AsSpan(c * 256, 256);
            for (int i = 0; i < pixels; i++) plane[i] = table[resized[3 * i + c]];
        }
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

    private static float[] BuildNormalised()
    {
        var table = new float[3 * 256];
        for (int c = 0; c < 3; c++)
            for (int v = 0; v < 256; v++)
            {
                float x = v / 255f;           // ToTensor: float32 division
                float centred = x - ClipMean[c]; // Normalize: sub_ then div_, each rounded to float32
                table[c * 256 + v] = centred / ClipStd[c];
            }
        return table;
    }
}
