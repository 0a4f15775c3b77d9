using System.Buffers;

namespace MiniGpt4.Imaging;

/// <summary>What <see cref="ImageInput.Inspect"/> learnt about an image without decoding it.</summary>
/// <param name="Format">The container format from the content; <see cref="EncodedImageFormat.Unknown"/> for RGB input.</param>
/// <param name="Width">The declared width in pixels; 0 when the first <see cref="ImageInputReader.MaxHeaderBytes"/>
/// bytes of a file or stream end before the size fields (then the limits are applied once the whole image is read).</param>
/// <param name="Height">The declared height in pixels; 0 when not known (see <paramref name="Width"/>).</param>
/// <param name="ByteSize">The input's size in bytes: the encoded length of file, byte and stream input, the
/// pixel buffer of RGB input; -1 for a stream that cannot seek and was not read to its end.</param>
internal readonly record struct ImageInspection(EncodedImageFormat Format, long Width, long Height, long ByteSize)
{
    public bool SizeKnown => Width > 0 && Height > 0;

    /// <summary>Bytes of the decoded RGB24 pixels: <c>Width * Height * 3</c>, or the most the pixel budget allows when the size is not known.</summary>
    public long DecodedBytes(ImageDecodingOptions options) => 3 * (SizeKnown ? Width * Height : options.MaxPixels);
}

/// <summary>
/// Bytes taken from a stream that cannot seek, kept so that the decode starts with them: inspecting such
/// a stream does not use it up. The input's lock for its stream.
/// </summary>
internal sealed class StreamHead
{
    private byte[] _bytes = [];

    public int Length { get; private set; }
    public bool Ended { get; private set; }
    public ReadOnlySpan<byte> Span => _bytes.AsSpan(0, Length);

    /// <summary>Reads on until <paramref name="want"/> bytes are in or the stream ends, never more than one byte past the byte limit.</summary>
    /// <exception cref="MiniGptImageException">The stream holds more than <see cref="ImageDecodingOptions.MaxEncodedBytes"/>.</exception>
    public void ReadUpTo(Stream stream, long want, ImageDecodingOptions options)
    {
        want = Math.Min(want, Math.Min(options.MaxEncodedBytes, Array.MaxLength - 1L) + 1);
        while (!Ended && Length < want)
        {
            if (Length == _bytes.Length)
                Array.Resize(ref _bytes, (int)Math.Min(want, Math.Max(2L * _bytes.Length, ImageInputReader.HeaderBytes)));
            int n = stream.Read(_bytes, Length, _bytes.Length - Length);
            Ended = n == 0;
            Length += n;
        }
        if (Length > options.MaxEncodedBytes) throw ImageLimits.StreamOverByteLimit(Length, options);
        if (Length == Array.MaxLength && !Ended) ImageLimits.CheckEncodedBytes(Length + 1L, options);
    }

    /// <summary>Hands the bytes over to the decode: the stream is used up.</summary>
    public ReadOnlyMemory<byte> Release()
    {
        var bytes = _bytes.AsMemory(0, Length);
        (_bytes, Length) = ([], 0);
        return bytes;
    }
}

/// <summary>
/// Reads the image of an <see cref="ImageInput"/> within the limits: first only enough to apply them
/// (<see cref="Inspect"/>: a length and the header's first bytes, or an RGB size), then, for decoding,
/// the whole encoded image (<see cref="ReadEncoded"/>), never more than
/// <see cref="ImageDecodingOptions.MaxEncodedBytes"/> + 1 bytes.
/// </summary>
internal static class ImageInputReader
{
    /// <summary>Bytes read first for the header: enough for every format's size fields but JPEGs with large metadata.</summary>
    public const int HeaderBytes = 64 * 1024;

    /// <summary>Bytes read at most for the header, when the first <see cref="HeaderBytes"/> do not reach the size (JPEG APPn segments, GIF extensions).</summary>
    public const int MaxHeaderBytes = 1024 * 1024;

    private static readonly int[] HeaderWindows = [HeaderBytes, MaxHeaderBytes];

    /// <summary>See <see cref="ImageInput.Inspect"/>; messages do not name the source (<see cref="WithSource"/> adds it).</summary>
    public static ImageInspection Inspect(ImageInput image, ImageDecodingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        switch (image.Kind)
        {
            case ImageInput.InputKind.Rgb:
                ImageLimits.CheckSize("RGB", image.Width, image.Height, options, "before resizing");
                return new ImageInspection(EncodedImageFormat.Unknown, image.Width, image.Height, image.Data.Length);
            case ImageInput.InputKind.Encoded:
                // All bytes are at hand: the whole walk costs no more than reading the header.
                var header = ImageLimits.CheckEncoded(image.Data.Span, options);
                return new ImageInspection(header.Format, header.Width, header.Height, image.Data.Length);
            default:
                return Read(image, options, static (stream, image, options) => stream.CanSeek && image.Head.Length == 0
                    ? InspectSeekable(stream, options)
                    : image.Kind == ImageInput.InputKind.Stream ? InspectUnseekable(image.Head, stream, options)
                    // What is read from a pipe opened by path could not be read again: ReadEncoded checks its header.
                    : new ImageInspection(EncodedImageFormat.Unknown, 0, 0, -1));
        }
    }

    /// <summary>
    /// The whole encoded image of a file, stream or byte input, after <see cref="Inspect"/>. A file or
    /// seekable stream over the byte limit is refused from its length; a stream that cannot seek is
    /// read up to one byte past the limit at most.
    /// </summary>
    public static ReadOnlyMemory<byte> ReadEncoded(ImageInput image, ImageDecodingOptions options)
    {
        if (image.Kind == ImageInput.InputKind.Encoded)
        {
            ImageLimits.CheckEncodedBytes(image.Data.Length, options);
            return image.Data;
        }
        return Read(image, options, static (stream, image, options) =>
        {
            if (stream.CanSeek && image.Head.Length == 0)
            {
                var all = new byte[RemainingLength(stream, options)];
                stream.ReadExactly(all);
                return all;
            }
            // A pipe opened by path: its header is checked before the rest is read.
            var head = image.Kind == ImageInput.InputKind.File ? new StreamHead() : image.Head;
            if (image.Kind == ImageInput.InputKind.File) InspectUnseekable(head, stream, options);
            head.ReadUpTo(stream, long.MaxValue, options);
            return head.Release();
        });
    }

    /// <summary>The same error with the source in front: <c>Image file 'x.png': ...</c>.</summary>
    public static MiniGptImageException WithSource(ImageInput image, MiniGptImageException e)
    {
        string source = image.ToString();
        return new MiniGptImageException($"{char.ToUpperInvariant(source[0])}{source[1..]}: {e.Message}", e);
    }

    /// <summary>
    /// Runs <paramref name="read"/> on the input's file, opened for it, or on its stream, under the
    /// input's lock; read errors become <see cref="MiniGptImageException"/>.
    /// </summary>
    private static T Read<T>(ImageInput image, ImageDecodingOptions options, Func<Stream, ImageInput, ImageDecodingOptions, T> read)
    {
        bool isFile = image.Kind == ImageInput.InputKind.File;
        try
        {
            if (!isFile)
                lock (image.Head) return read(image.Stream ?? throw new InvalidOperationException("RGB input has no encoded bytes."), image, options);
            using var file = new FileStream(image.Path!, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.SequentialScan);
            return read(file, image, options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ObjectDisposedException
                                  || (isFile && e is ArgumentException))
        {
            throw new MiniGptImageException($"The {(isFile ? "file" : "stream")} cannot be read: {e.Message}", e);
        }
    }

    /// <summary>The bytes from the position of a file or seekable stream to its end, refused over the byte limit.</summary>
    private static long RemainingLength(Stream stream, ImageDecodingOptions options)
    {
        long length = Math.Max(0, stream.Length - stream.Position);
        ImageLimits.CheckEncodedBytes(length, options, "from its length, without reading it");
        return length;
    }

    /// <summary>
    /// Header check of a file or seekable stream from its position, to which it is put back: reads the
    /// header windows, at most <see cref="MaxHeaderBytes"/>, into a pooled buffer.
    /// </summary>
    private static ImageInspection InspectSeekable(Stream stream, ImageDecodingOptions options)
    {
        long start = stream.Position, length = RemainingLength(stream, options);
        var buffer = ArrayPool<byte>.Shared.Rent((int)Math.Min(length, MaxHeaderBytes));
        try
        {
            EncodedImageHeader header = default;
            int n = 0;
            foreach (int window in HeaderWindows)
            {
                int want = (int)Math.Min(length, window);
                n += stream.ReadAtLeast(buffer.AsSpan(n, want - n), want - n, throwOnEndOfStream: false);
                header = EncodedImageInspector.Inspect(buffer.AsSpan(0, n), options, prefixOnly: n == want && n < length);
                if (header.Width >= 0 || n < window) break;
            }
            return new ImageInspection(header.Format, Math.Max(0, header.Width), Math.Max(0, header.Height), length);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            stream.Position = start;
        }
    }

    /// <summary>Header check of a stream that cannot seek: the bytes read stay in <paramref name="head"/>.</summary>
    private static ImageInspection InspectUnseekable(StreamHead head, Stream stream, ImageDecodingOptions options)
    {
        EncodedImageHeader header = default;
        foreach (int window in HeaderWindows)
        {
            head.ReadUpTo(stream, window, options);
            header = EncodedImageInspector.Inspect(head.Span, options, prefixOnly: !head.Ended);
            if (header.Width > 0 || head.Ended) break;
        }
        return new ImageInspection(header.Format, Math.Max(0, header.Width), Math.Max(0, header.Height), head.Ended ? head.Length : -1);
    }
}
