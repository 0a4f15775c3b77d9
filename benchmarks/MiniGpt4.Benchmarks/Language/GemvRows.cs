using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using MiniGpt4.Language.Kernels;

namespace MiniGpt4.Benchmarks.Language;

/// <summary>
/// <c>gemv-rows THREADS OUT IN [ROWS...]</c>: the bf16 decode products of one <c>[OUT, IN]</c> weight (cycling over copies
/// that together pass 256 MB, so each product reads its weight from memory) with 1..8 activation rows, as a batched
/// decode step runs them; prints per row count the median time, the weight read rate and the arithmetic rate. This is
/// what bounds continuous batching (docs/batching.md).
/// </summary>
internal static unsafe class GemvRows
{
    public static int Run(string[] args)
    {
        var threads = int.Parse(args[0], CultureInfo.InvariantCulture);
        long outFeatures = long.Parse(args[1], CultureInfo.InvariantCulture), n = long.Parse(args[2], CultureInfo.InvariantCulture);
        var rowCounts = args.Length > 3 ? args[3..].Select(a => int.Parse(a, CultureInfo.InvariantCulture)).ToArray() : [1, 2, 3, 4, 6, 8];
        var bytes = outFeatures * n * 2;
        var copies = (int)Math.Max(4, (256L << 20) / bytes + 1);
        var rnd = new Random(5);
        var weights = Enumerable.Range(0, copies).Select(_ => (nint)Random(outFeatures * n, rnd)).ToArray();
        var x = Random(8 * n, rnd);
        var y = (float*)NativeMemory.AlignedAlloc((nuint)(8 * outFeatures * 4), 64);
        using var work = new GemvWork();
        var next = 0;
        foreach (var rows in rowCounts)
        {
            var times = new List<double>();
            for (var i = 0; i < 5 * copies + 20; i++)
            {
                var t = Stopwatch.GetTimestamp();
                work.Begin((nint)x, n, rows, bf16: true).Add(weights[next], (nint)y, outFeatures).Run(threads);
                if (i >= copies) times.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                next = (next + 1) % copies;
            }
            times.Sort();
            var ms = times[times.Count / 2];
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"threads={threads} {outFeatures}x{n} rows={rows}: median {ms:F2} ms (best {times[0]:F2}), {bytes / ms / 1e6:F1} GB/s, {2.0 * rows * outFeatures * n / ms / 1e6:F1} GFLOP/s"));
        }
        foreach (var w in weights) NativeMemory.AlignedFree((void*)w);
        NativeMemory.AlignedFree(x);
        NativeMemory.AlignedFree(y);
        return 0;
    }

    /// <summary><paramref name="count"/> bf16 values, normal with standard deviation 0.02, 64-byte aligned.</summary>
    private static ushort* Random(long count, Random rnd)
    {
        var p = (ushort*)NativeMemory.AlignedAlloc((nuint)(count * 2), 64);
        for (long i = 0; i < count; i++) p[i] = (ushort)(BitConverter.SingleToUInt32Bits((float)(rnd.NextDouble() * 0.04 - 0.02)) >> 16);
        return p;
    }
}
