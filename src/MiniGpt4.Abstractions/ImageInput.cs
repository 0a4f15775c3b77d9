using MiniGpt4.Imaging;

namespace MiniGpt4;

/// <summary>
/// An image as a user hands it over: a file path, a stream, encoded bytes (JPEG, PNG, WebP, BMP; GIF
/// and TIFF when <see cref="ImageDecodingOptions"/> allows them), or already decoded RGB pixels.
/// Encoded input is decoded only when the image is used, with the limits of
/// <see cref="ImageDecodingOptions"/>; the format is read from the content, never from a file name.
/// Every limit (encoded bytes, declared and decoded pixels, width and height) holds for every kind of
/// input, RGB pixels included, and is checked before the image is decoded.
/// </summary>
public sealed class ImageInput
{
    private ImageInput() { }

    internal enum InputKind { File, Stream, Encoded, Rgb }

    internal InputKind Kind { get; private init; }
    internal string? Path { get; private init; }
    internal Stream? Stream { get; private init; }
    internal ReadOnlyMemory<byte> Data { get; private init; }
    internal int Width { get; private init; }
    internal int Height { get; private init; }

    internal StreamHead Head { get; } = new();

    /// <summary>
    /// Applies the limits of <paramref name="options"/> as far as they can be applied without decoding,
    /// and returns what the image declares: for a queue's admission check, and the first step of every
    /// decode. Cheap: nothing the size of the image is read or allocated (docs/imaging.md, "Admission check").
    /// </summary>
    /// <returns>The format, the declared width and height (0 when the header's first bytes do not reach them)
    /// and the size in bytes (-1 for a stream that cannot seek, not read to its end).</returns>
    /// <exception cref="MiniGptImageException">A limit is exceeded, the format is unknown or not allowed, or
    /// the input cannot be read; the message names the source and the limit with its value.</exception>
    internal ImageInspection Inspect(ImageDecodingOptions options)
    {
        try
        {
            return ImageInputReader.Inspect(this, options);
        }
        catch (MiniGptImageException e)
        {
            throw ImageInputReader.WithSource(this, e);
        }
    }

    /// <summary>
    /// An encoded image file. The file is read when the image is used; one longer than
    /// <see cref="ImageDecodingOptions.MaxEncodedBytes"/> is refused from its length.
    /// </summary>
    /// <param name="path">Path of a JPEG, PNG, WebP or BMP file (its extension is ignored).</param>
    /// <exception cref="ArgumentException">The path is null or empty.</exception>
    public static ImageInput FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return new ImageInput { Kind = InputKind.File, Path = path };
    }

    /// <summary>
    /// An encoded image in a stream. The stream is read from its current position to its end when the
    /// image is used, so such an input can be used once; the stream is not disposed. A seekable stream
    /// longer than <see cref="ImageDecodingOptions.MaxEncodedBytes"/> is refused from its length; any other
    /// is read no further than one byte past it, and its header is checked before the rest is read.
    /// </summary>
    /// <param name="stream">A readable stream.</param>
    /// <exception cref="ArgumentNullException">The stream is null.</exception>
    /// <exception cref="ArgumentException">The stream is not readable.</exception>
    public static ImageInput FromStream(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanRead) throw new ArgumentException("The stream is not readable.", nameof(stream));
        return new ImageInput { Kind = InputKind.Stream, Stream = stream };
    }

    /// <summary>
    /// An encoded image held in memory (the bytes are not copied: do not change them while the image is
    /// in use). <see cref="ImageDecodingOptions.MaxEncodedBytes"/> applies to it too.
    /// </summary>
    /// <param name="encoded">The bytes of a JPEG, PNG, WebP or BMP file.</param>
    public static ImageInput FromBytes(ReadOnlyMemory<byte> encoded)
        => new() { Kind = InputKind.Encoded, Data = encoded };

    /// <summary>
    /// Decoded pixels: <paramref name="height"/> rows of <paramref name="width"/> pixels, 3 bytes per
    /// pixel in R, G, B order, rows top to bottom without padding (HWC uint8). Not copied. When the image
    /// is used, its size is checked against <see cref="ImageDecodingOptions.MaxPixels"/> and
    /// <see cref="ImageDecodingOptions.MaxDimension"/> like a decoded image's, before it is resized.
    /// </summary>
    /// <param name="width">Width in pixels (at least 1).</param>
    /// <param name="height">Height in pixels (at least 1).</param>
    /// <param name="rgb24">Exactly <c>width * height * 3</c> bytes.</param>
    /// <exception cref="MiniGptImageException">A size is not positive or the buffer length does not match.</exception>
    public static ImageInput FromRgb(int width, int height, ReadOnlyMemory<byte> rgb24)
    {
        if (width <= 0 || height <= 0)
            throw new MiniGptImageException($"RGB image size {width}x{height} is invalid: width and height must be at least 1.");
        long expected = (long)width * height * 3;
        if (rgb24.Length != expected)
            throw new MiniGptImageException(
                $"RGB image {width}x{height} needs {expected} bytes (3 per pixel, rows without padding) but {rgb24.Length} were given.");
        return new ImageInput { Kind = InputKind.Rgb, Data = rgb24, Width = width, Height = height };
    }

    /// <summary>A short description of where the image comes from, for messages.</summary>
    public override string ToString() => Kind switch
    {
        InputKind.File => $"image file '{Path}'",
        InputKind.Stream => "image stream",
        InputKind.Encoded => $"encoded image ({Data.Length} bytes)",
        _ => $"RGB image {Width}x{Height}",
    };
}
