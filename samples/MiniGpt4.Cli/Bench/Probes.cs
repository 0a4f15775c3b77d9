using System.Diagnostics;
using System.Runtime.Intrinsics;
using TorchSharp;

namespace MiniGpt4.Cli.Bench;

/// <summary>
/// The ceilings a run is measured against, measured in the same process: read bandwidth (a STREAM-style sum of a
/// large array with 256-bit vectors on N threads) and the bf16 matrix-multiply rate (libtorch <c>matmul</c> of
/// 2048 × 2048 at the same thread count), and how fast a process's first touch of the model's files in the page cache
/// runs (the floor under any load that maps them).
/// </summary>
internal static class Probes
{
    /// <summary>Bytes the bandwidth probe reads: 8 × the L3 cache, at least 2 GiB (so no cache level holds a useful part of it).</summary>
    public static long BandwidthBytes()
    {
        long l3 = 32L << 20;
        try
        {
            var text = File.ReadAllText("/sys/devices/system/cpu/cpu0/cache/index3/size").Trim();
            if (text.EndsWith('K') && long.TryParse(text[..^1], out var k)) l3 = k << 10;
            else if (text.EndsWith('M') && long.TryParse(text[..^1], out var m)) l3 = m << 20;
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return Math.Max(8 * l3, 2L << 30);
    }

    /// <summary>Best read bandwidth in GB/s (10^9 bytes) over <paramref name="passes"/> passes, for 1 to <paramref name="maxThreads"/> threads.</summary>
    public static unsafe double[] ReadBandwidth(int maxThreads, long bytes, int passes = 5)
    {
        var floats = bytes / sizeof(float) / 64 * 64;
        var data = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(floats * sizeof(float)), 64);
        try
        {
            new Span<float>(data, (int)Math.Min(floats, int.MaxValue)).Fill(1f);
            for (long done = int.MaxValue; done < floats; done += int.MaxValue)
                new Span<float>(data + done, (int)Math.Min(floats - done, int.MaxValue)).Fill(1f);
            var result = new double[maxThreads];
            for (var threads = 1; threads <= maxThreads; threads++)
            {
                var best = double.MaxValue;
                var chunk = floats / threads / 64 * 64;
                for (var pass = 0; pass <= passes; pass++) // pass 0 warms up
                {
                    var sums = new float[threads];
                    var sw = Stopwatch.StartNew();
                    var ptr = (nint)data;
                    Parallel.For(0, threads, new ParallelOptions { MaxDegreeOfParallelism = threads }, t =>
                    {
                        var n = t == threads - 1 ? floats - chunk * t : chunk;
                        sums[t] = Sum((float*)ptr + chunk * t, n);
                    });
                    var s = sw.Elapsed.TotalSeconds;
                    GC.KeepAlive(sums);
                    if (pass > 0) best = Math.Min(best, s);
                }
                result[threads - 1] = floats * sizeof(float) / best / 1e9;
            }
            return result;
        }
        finally
        {
            System.Runtime.InteropServices.NativeMemory.AlignedFree(data);
        }
    }

    /// <summary>Sums <paramref name="n"/> floats (a multiple of 32) with four 256-bit accumulators.</summary>
    private static unsafe float Sum(float* p, long n)
    {
        Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
        var end = p + n;
        for (; p + 32 <= end; p += 32)
        {
            a0 += Vector256.LoadAligned(p);
            a1 += Vector256.LoadAligned(p + 8);
            a2 += Vector256.LoadAligned(p + 16);
            a3 += Vector256.LoadAligned(p + 24);
        }
        var total = Vector256.Sum(a0 + a1 + a2 + a3);
        for (; p < end; p++) total += *p;
        return total;
    }

    /// <summary>Best bf16 <c>matmul</c> rate of <paramref name="n"/> × <paramref name="n"/> matrices in GFLOP/s on <paramref name="threads"/> libtorch threads.</summary>
    public static double GemmBf16(int threads, int n = 2048, int reps = 5)
    {
        torch.set_num_threads(threads);
        using var scope = torch.NewDisposeScope();
        var g = new torch.Generator(1);
        var a = torch.randn([n, n], generator: g).to(torch.bfloat16);
        var b = torch.randn([n, n], generator: g).to(torch.bfloat16);
        for (var i = 0; i < 2; i++) torch.matmul(a, b).Dispose();
        var best = double.MaxValue;
        for (var i = 0; i < reps; i++)
        {
            var sw = Stopwatch.StartNew();
            torch.matmul(a, b).Dispose();
            best = Math.Min(best, sw.Elapsed.TotalSeconds);
        }
        return 2.0 * n * n * n / best / 1e9;
    }

    /// <summary>
    /// GB/s of a first pass over fresh read-only maps of <paramref name="files"/>: one byte read per 4 KiB page, as a
    /// loader that maps the weights and then uses each page once must do. Files not in the page cache are read from
    /// disk on the way (run it twice, or after a load, to see the page-cache figure).
    /// </summary>
    public static unsafe double FirstTouch(IReadOnlyList<string> files)
    {
        long bytes = 0;
        var sw = Stopwatch.StartNew();
        byte sink = 0;
        foreach (var path in files)
        {
            var length = new FileInfo(path).Length;
            if (length == 0) continue;
            using var map = System.IO.MemoryMappedFiles.MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, System.IO.MemoryMappedFiles.MemoryMappedFileAccess.Read);
            using var view = map.CreateViewAccessor(0, 0, System.IO.MemoryMappedFiles.MemoryMappedFileAccess.Read);
            byte* p = null;
            view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            try
            {
                for (long off = 0; off < length; off += 4096) sink ^= p[view.PointerOffset + off];
            }
            finally
            {
                view.SafeMemoryMappedViewHandle.ReleasePointer();
            }
            bytes += length;
        }
        GC.KeepAlive(sink);
        return bytes / sw.Elapsed.TotalSeconds / 1e9;
    }
}
