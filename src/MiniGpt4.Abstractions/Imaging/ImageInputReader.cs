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
    /// <summary>The width and height are known.</summary>
    public bool SizeKnown => Width > 0 && Height > 0;

    /// <summary>Bytes of the decoded RGB24 pixels: <c>Width * Height * 3</c>, or the most the pixel budget allows when the size is not known.</summary>
    public long DecodedBytes(ImageDecodingOptions options) => 3 * (SizeKnown ? Width * Height : options.MaxPixels);
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

    private const string FromLength = "from its length, without reading it";

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
                return Read(image, options, static (stream, image, options) => stream.CanSeek && image.StreamHeadLength == 0
                    ? InspectSeekable(stream, options)
                    : image.Kind == ImageInput.InputKind.Stream ? InspectUnseekable(image, stream, options)
                    // What is read from a pipe opened by path could not be read again: ReadEncoded checks its header as it reads.
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
            var head = image.StreamHead.AsMemory(0, image.StreamHeadLength);
            var all = ReadAll(stream, head, image.StreamEnded, headerChecked: image.Kind == ImageInput.InputKind.Stream || stream.CanSeek, options);
            image.StreamHead = [];
            image.StreamHeadLength = 0;
            return all;
        });
    }

    /// <summary>The same error with the source in front: <c>Image file 'x.png': ...</c>.</summary>
    public static MiniGptImageException WithSource(ImageInput image, MiniGptImageException e)
    {
        string source = image.ToString();
        return new MiniGptImageException($"{char.ToUpperInvariant(source[0])}{source[1..]}: {e.Message}", e);
    }

    /// <summary>Runs <paramref name="read"/> on the input's file, opened for it, or on its stream, under the input's lock; read errors become <see cref="MiniGptImageException"/>.</summary>
    private static T Read<T>(ImageInput image, ImageDecodingOptions options, Func<Stream, ImageInput, ImageDecodingOptions, T> read)
    {
        bool isFile = image.Kind == ImageInput.InputKind.File;
        try
        {
            if (!isFile)
                lock (image.StreamGate) return read(image.Stream ?? throw new InvalidOperationException("RGB input has no encoded bytes."), image, options);
            using var file = new FileStream(image.Path!, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 0, FileOptions.SequentialScan);
            return read(file, image, options);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or NotSupportedException or ObjectDisposedException
                                  || (isFile && e is ArgumentException))
        {
            throw new MiniGptImageException($"The {(isFile ? "file" : "stream")} cannot be read: {e.Message}", e);
        }
    }

    /// <summary>
    /// Header check of a file or seekable stream from its position, to which it is put back: reads the
    /// header windows, at most <see cref="MaxHeaderBytes"/>, into a pooled buffer.
    /// </summary>
    private static ImageInspection InspectSeekable(Stream stream, ImageDecodingOptions options)
    {
        long start = stream.Position, length = Math.Max(0, stream.Length - start);
        ImageLimits.CheckEncodedBytes(length, options, FromLength);
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

    /// <summary>
    /// Header check of a stream that cannot seek: the bytes read are kept in the input
    /// (<see cref="ImageInput.StreamHead"/>) and decoded first, so that inspecting does not use the stream up.
    /// </summary>
    private static ImageInspection InspectUnseekable(ImageInput image, Stream stream, ImageDecodingOptions options)
    {
        var head = image.StreamHead;
        int length = image.StreamHeadLength;
        bool ended = image.StreamEnded;
        try
        {
            EncodedImageHeader header = default;
            foreach (int window in HeaderWindows)
            {
                // Never more than one byte past the byte limit.
                int want = options.MaxEncodedBytes < window ? (int)options.MaxEncodedBytes + 1 : window;
                if (!ended && length < want)
                {
                    if (head.Length < want) Array.Resize(ref head, want);
                    int n = stream.ReadAtLeast(head.AsSpan(length, want - length), want - length, throwOnEndOfStream: false);
                    ended = n < want - length;
                    length += n;
                }
                if (length > options.MaxEncodedBytes) throw ImageLimits.StreamOverByteLimit(length, options);
                header = EncodedImageInspector.Inspect(head.AsSpan(0, length), options, prefixOnly: !ended);
                if (header.Width > 0 || ended) break;
            }
            return new ImageInspection(header.Format, Math.Max(0, header.Width), Math.Max(0, header.Height), ended ? length : -1);
        }
        finally
        {
            image.StreamHead = head;
            image.StreamHeadLength = length;
            image.StreamEnded = ended;
        }
    }

    /// <summary>
    /// <paramref name="head"/> (bytes already taken from the stream) followed by the rest of the stream,
    /// within the byte limit. Unless <paramref name="headerChecked"/>, the header of a stream without a
    /// length is checked once its first bytes are in, before the buffer grows further.
    /// </summary>
    private static ReadOnlyMemory<byte> ReadAll(Stream stream, ReadOnlyMemory<byte> head, bool ended, bool headerChecked, ImageDecodingOptions options)
    {
        long max = options.MaxEncodedBytes;
        if (ended)
        {
            ImageLimits.CheckEncodedBytes(head.Length, options);
            return head;
        }
        if (stream.CanSeek)
        {
            long total = head.Length + Math.Max(0, stream.Length - stream.Position);
            ImageLimits.CheckEncodedBytes(total, options, FromLength);
            var all = new byte[total];
            head.Span.CopyTo(all);
            stream.ReadExactly(all.AsSpan(head.Length));
            return all;
        }

        // No length: grow a buffer, reading never more than max + 1 bytes in all.
        long cap = Math.Min(max, Array.MaxLength - 1L) + 1;
        if (head.Length > max) throw ImageLimits.StreamOverByteLimit(head.Length, options);
        var buffer = new byte[(int)Math.Min(cap, Math.Max(2L * head.Length, HeaderBytes))];
        head.Span.CopyTo(buffer);
        int length = head.Length;
        while (true)
        {
            if (length == buffer.Length)
            {
                if (!headerChecked)
                {
                    var header = EncodedImageInspector.Inspect(buffer.AsSpan(0, length), options, prefixOnly: true);
                    headerChecked = header.Width > 0 || length >= MaxHeaderBytes;
                }
                if (length > max) throw ImageLimits.StreamOverByteLimit(length, options);
                if (length == Array.MaxLength) ImageLimits.CheckEncodedBytes(length + 1L, options);
                Array.Resize(ref buffer, (int)Math.Min(cap, 2L * buffer.Length));
            }
            int n = stream.Read(buffer, length, buffer.Length - length);
            if (n == 0) break;
            length += n;
        }
        return buffer.AsMemory(0, length);
    }
}
