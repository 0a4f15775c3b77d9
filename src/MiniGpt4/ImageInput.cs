namespace MiniGpt4;

/// <summary>
/// An image as a user hands it over: a file path, a stream, encoded bytes (JPEG, PNG, WebP, BMP; GIF
/// and TIFF when <see cref="ImageDecodingOptions"/> allows them), or already decoded RGB pixels.
/// Encoded input is decoded only when the image is used, with the limits of
/// <see cref="ImageDecodingOptions"/>; the format is read from the content, never from a file name.
/// </summary>
public sealed class ImageInput
{
    private ImageInput(InputKind kind, string? path, Stream? stream, ReadOnlyMemory<byte> data, int width, int height)
    {
        Kind = kind;
        Path = path;
        Stream = stream;
        Data = data;
        Width = width;
        Height = height;
    }

    internal enum InputKind { File, Stream, Encoded, Rgb }

    internal InputKind Kind { get; }
    internal string? Path { get; }
    internal Stream? Stream { get; }
    internal ReadOnlyMemory<byte> Data { get; }
    internal int Width { get; }
    internal int Height { get; }

    /// <summary>An encoded image file. The file is read when the image is used.</summary>
    /// <param name="path">Path of a JPEG, PNG, WebP or BMP file (its extension is ignored).</param>
    /// <exception cref="ArgumentException">The path is null or empty.</exception>
    public static ImageInput FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        return new ImageInput(InputKind.File, path, null, default, 0, 0);
    }

    /// <summary>
    /// An encoded image in a stream. The stream is read from its current position to its end when the
    /// image is used (up to <see cref="ImageDecodingOptions.MaxEncodedBytes"/>), so such an input can be
    /// used once; the stream is not disposed.
    /// </summary>
    /// <param name="stream">A readable stream.</param>
    /// <exception cref="ArgumentNullException">The stream is null.</exception>
    /// <exception cref="ArgumentException">The stream is not readable.</exception>
    public static ImageInput FromStream(Stream stream)
    {
        ArgumentNullException.ThrowIfNull(stream);
        if (!stream.CanRead) throw new ArgumentException("The stream is not readable.", nameof(stream));
        return new ImageInput(InputKind.Stream, null, stream, default, 0, 0);
    }

    /// <summary>An encoded image held in memory (the bytes are not copied: do not change them while the image is in use).</summary>
    /// <param name="encoded">The bytes of a JPEG, PNG, WebP or BMP file.</param>
    public static ImageInput FromBytes(ReadOnlyMemory<byte> encoded)
        => new(InputKind.Encoded, null, null, encoded, 0, 0);

    /// <summary>
    /// Decoded pixels: <paramref name="height"/> rows of <paramref name="width"/> pixels, 3 bytes per
    /// pixel in R, G, B order, rows top to bottom without padding (HWC uint8). Not copied.
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
        return new ImageInput(InputKind.Rgb, null, null, rgb24, width, height);
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
