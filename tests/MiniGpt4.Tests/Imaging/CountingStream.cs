namespace MiniGpt4.Tests.Imaging;

/// <summary>
/// A read-only stream of <paramref name="head"/> followed by <paramref name="zeros"/> zero bytes
/// (or endless zeros when <paramref name="zeros"/> is negative), generated rather than stored, that
/// counts the bytes it hands out. Seekable or not (like a network stream).
/// </summary>
internal sealed class CountingStream(byte[] head, long zeros = 0, bool seekable = true) : Stream
{
    private long _position;
    private readonly long _length = zeros < 0 ? long.MaxValue : head.Length + zeros;

    /// <summary>Bytes returned by Read so far.</summary>
    public long BytesRead { get; private set; }

    public override bool CanRead => true;
    public override bool CanSeek => seekable;
    public override bool CanWrite => false;
    public override long Length => seekable && zeros >= 0 ? _length : throw new NotSupportedException();

    public override long Position
    {
        get => _position;
        set { if (!seekable) throw new NotSupportedException(); _position = value; }
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        int n = (int)Math.Min(buffer.Length, _length - _position);
        if (n <= 0) return 0;
        int fromHead = (int)Math.Clamp(head.Length - _position, 0, n);
        if (fromHead > 0) head.AsSpan((int)_position, fromHead).CopyTo(buffer);
        buffer[fromHead..n].Clear();
        _position += n;
        BytesRead += n;
        return n;
    }

    public override long Seek(long offset, SeekOrigin origin)
    {
        if (!seekable) throw new NotSupportedException();
        return Position = origin switch { SeekOrigin.Begin => offset, SeekOrigin.Current => _position + offset, _ => _length + offset };
    }

    public override void Flush() { }
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
