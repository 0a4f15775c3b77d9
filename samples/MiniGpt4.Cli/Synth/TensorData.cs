using System.Diagnostics;

namespace MiniGpt4.Cli.Synth;

/// <summary>Bytes written so far, reported on stderr every 5 % (and at the end) with the rate.</summary>
internal sealed class SynthProgress(long totalBytes, TextWriter? output)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _written;
    private int _lastStep = -1;

    public long Written => _written;

    public void Add(long bytes, string file)
    {
        _written += bytes;
        var step = totalBytes == 0 ? 20 : (int)(_written * 20 / totalBytes);
        if (step == _lastStep || output is null) return;
        _lastStep = step;
        var s = _clock.Elapsed.TotalSeconds;
        output.WriteLine($"[synth] {step * 5,3}% {_written / 1e9,6:F2} of {totalBytes / 1e9:F2} GB, {(s > 0 ? _written / 1e9 / s : 0):F2} GB/s  {file}");
    }
}

/// <summary>Streams tensors' random data to a file through one reusable buffer (never a whole tensor in memory).</summary>
internal sealed class TensorData(RandomWeights random, SynthProgress progress, CancellationToken ct = default)
{
    /// <summary>Buffer size: 32 MiB, a multiple of every block's byte size.</summary>
    private const int BufferBytes = 32 << 20;
    private byte[]? _buffer;

    public SynthDType DType => random.DType;

    public long Bytes(TensorSpec t) => t.Elements * random.DType.Size();

    /// <summary>Writes <paramref name="t"/>'s data to <paramref name="output"/>, feeding every byte to <paramref name="observe"/> (a checksum) when given.</summary>
    public void Write(Stream output, TensorSpec t, string file, Action<ReadOnlySpan<byte>>? observe = null)
    {
        _buffer ??= GC.AllocateUninitializedArray<byte>(BufferBytes);
        var size = random.DType.Size();
        var total = t.Elements;
        var perBuffer = BufferBytes / size;
        for (long first = 0; first < total; first += perBuffer)
        {
            ct.ThrowIfCancellationRequested();
            var n = (int)Math.Min(perBuffer, total - first);
            var span = _buffer.AsSpan(0, n * size);
            random.Fill(t, first, span);
            observe?.Invoke(span);
            output.Write(span);
            progress.Add(span.Length, file);
        }
    }
}
