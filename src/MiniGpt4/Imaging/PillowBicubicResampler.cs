using System.Numerics;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MiniGpt4.Imaging;

/// <summary>
/// Bicubic resize that gives the same bytes as Pillow's <c>Image.resize(size, BICUBIC)</c> on an
/// RGB image (Pillow's <c>ImagingResample</c>, 8 bits per channel), written from its description:
/// <list type="bullet">
/// <item>Keys cubic kernel with a = -0.5 and support 2; when shrinking by a factor s the kernel is
/// stretched by s (support 2s), which antialiases.</item>
/// <item>Output pixel i has its centre at (i + 0.5) * in/out in source coordinates; the source pixels
/// from round(centre - support) to round(centre + support) (clipped to the image) contribute, with
/// weights normalised to sum 1 in double precision and then rounded (half away from zero) to fixed
/// point with 22 fractional bits.</item>
/// <item>Separable: a horizontal pass, then a vertical pass. Each starts its integer sum at one half,
/// shifts right by 22 and clamps to 0..255, so the intermediate image is uint8 like Pillow's.</item>
/// <item>A pass whose size does not change is skipped; a same-size resize is a copy.</item>
/// </list>
/// </summary>
internal static class PillowBicubicResampler
{
    private const int PrecisionBits = 32 - 8 - 2;
    private const double Support = 2.0;
    private const int Channels = 3;

    /// <summary>Per output pixel: the first source index, the number of taps, and row-major [outSize, Stride] fixed-point weights.</summary>
    internal sealed record Coefficients(int[] First, int[] Count, int[] Weights, int Stride);

    /// <summary>Resizes packed RGB24 pixels to <paramref name="outWidth"/> x <paramref name="outHeight"/>.</summary>
    public static byte[] Resize(ReadOnlySpan<byte> rgb, int inWidth, int inHeight, int outWidth, int outHeight)
    {
        if (inWidth <= 0 || inHeight <= 0) throw new ArgumentOutOfRangeException(nameof(inWidth), $"source size {inWidth}x{inHeight} is empty");
        if (outWidth <= 0 || outHeight <= 0) throw new ArgumentOutOfRangeException(nameof(outWidth), $"target size {outWidth}x{outHeight} is empty");
        if (rgb.Length != (long)inWidth * inHeight * Channels)
            throw new ArgumentException($"expected {(long)inWidth * inHeight * Channels} bytes for {inWidth}x{inHeight} RGB, got {rgb.Length}", nameof(rgb));

        // Pillow's horizontal pass produces only the rows the vertical pass reads; over the whole image that
        // is every row, since the first and last output rows reach the edges.
        var rows = outWidth == inWidth ? rgb : ResampleRows(rgb, inWidth, inHeight, Compute(inWidth, outWidth), outWidth);
        return outHeight == inHeight ? rows.ToArray() : ResampleColumns(rows, outWidth, Compute(inHeight, outHeight), outHeight);
    }

    /// <summary>Pillow's coefficient table for resampling <paramref name="inSize"/> samples to <paramref name="outSize"/> (box = whole image).</summary>
    internal static Coefficients Compute(int inSize, int outSize)
    {
        // Pillow passes the box edges as C floats; for a whole image they are 0 and inSize.
        double scale = (double)(float)inSize / outSize;
        double filterScale = scale < 1.0 ? 1.0 : scale;
        double support = Support * filterScale;
        int stride = (int)Math.Ceiling(support) * 2 + 1;
        double inverseFilterScale = 1.0 / filterScale;

        var first = new int[outSize];
        var count = new int[outSize];
        var weights = new int[outSize * stride];
        var taps = new double[stride];
        for (int xx = 0; xx < outSize; xx++)
        {
            double center = (xx + 0.5) * scale;
            int xmin = Math.Max(0, (int)(center - support + 0.5)); // C casts: truncation toward zero
            int n = Math.Min(inSize, (int)(center + support + 0.5)) - xmin;
            double sum = 0.0;
            for (int x = 0; x < n; x++)
            {
                taps[x] = Kernel((x + xmin - center + 0.5) * inverseFilterScale);
                sum += taps[x];
            }
            var row = weights.AsSpan(xx * stride, stride);
            for (int x = 0; x < n; x++)
            {
                double k = sum != 0.0 ? taps[x] / sum : taps[x];
                row[x] = (int)(k < 0 ? -0.5 + k * (1 << PrecisionBits) : 0.5 + k * (1 << PrecisionBits));
            }
            first[xx] = xmin;
            count[xx] = n;
        }
        return new Coefficients(first, count, weights, stride);
    }

    /// <summary>Keys cubic convolution kernel with a = -0.5, written as Pillow evaluates it.</summary>
    private static double Kernel(double x)
    {
        const double a = -0.5;
        if (x < 0.0) x = -x;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }

    private static byte Clip8(int sum)
    {
        int v = sum >> PrecisionBits;
        return v < 0 ? (byte)0 : v > 255 ? (byte)255 : (byte)v;
    }

    /// <summary>Horizontal pass over all <paramref name="rows"/> of <paramref name="src"/>.</summary>
    private static byte[] ResampleRows(ReadOnlySpan<byte> src, int inWidth, int rows, Coefficients c, int outWidth)
    {
        const int half = 1 << (PrecisionBits - 1);
        int inStride = inWidth * Channels, outStride = outWidth * Channels;
        var dst = new byte[checked(rows * outStride)];
        // Index arithmetic below stays inside the buffers: the tables were built with First + Count <= inWidth.
        ref byte srcBase = ref MemoryMarshal.GetReference(src[..(rows * inStride)]);
        ref byte dstBase = ref MemoryMarshal.GetArrayDataReference(dst);
        ref int weights = ref MemoryMarshal.GetArrayDataReference(c.Weights);
        int[] first = c.First, count = c.Count;
        int kStride = c.Stride;
        for (int yy = 0; yy < rows; yy++)
        {
            ref byte srcRow = ref Unsafe.Add(ref srcBase, yy * inStride);
            ref byte dstPixel = ref Unsafe.Add(ref dstBase, yy * outStride);
            for (int xx = 0; xx < outWidth; xx++, dstPixel = ref Unsafe.Add(ref dstPixel, Channels))
            {
                ref int k = ref Unsafe.Add(ref weights, xx * kStride);
                ref byte px = ref Unsafe.Add(ref srcRow, first[xx] * Channels);
                int taps = count[xx];
                int s0 = half, s1 = half, s2 = half;
                for (int x = 0; x < taps; x++, px = ref Unsafe.Add(ref px, Channels))
                {
                    int kx = Unsafe.Add(ref k, x);
                    s0 += px * kx;
                    s1 += Unsafe.Add(ref px, 1) * kx;
                    s2 += Unsafe.Add(ref px, 2) * kx;
                }
                dstPixel = Clip8(s0);
                Unsafe.Add(ref dstPixel, 1) = Clip8(s1);
                Unsafe.Add(ref dstPixel, 2) = Clip8(s2);
            }
        }
        return dst;
    }

    /// <summary>Vertical pass over <paramref name="src"/>, rows of <paramref name="width"/> pixels.</summary>
    private static byte[] ResampleColumns(ReadOnlySpan<byte> src, int width, Coefficients c, int outHeight)
    {
        const int half = 1 << (PrecisionBits - 1);
        int stride = width * Channels;
        var dst = new byte[checked(outHeight * stride)];
        var acc = new int[stride];
        for (int yy = 0; yy < outHeight; yy++)
        {
            acc.AsSpan().Fill(half);
            int ymin = c.First[yy];
            var k = c.Weights.AsSpan(yy * c.Stride, c.Count[yy]);
            // Integer addition is exact and associative, so summing row by row gives Pillow's per-pixel sums.
            for (int y = 0; y < k.Length; y++)
                MultiplyAdd(src.Slice((ymin + y) * stride, stride), k[y], acc);
            var dstRow = dst.AsSpan(yy * stride, stride);
            for (int i = 0; i < dstRow.Length; i++) dstRow[i] = Clip8(acc[i]);
        }
        return dst;
    }

    /// <summary><c>acc[i] += row[i] * k</c>, vectorised where the hardware allows.</summary>
    private static void MultiplyAdd(ReadOnlySpan<byte> row, int k, Span<int> acc)
    {
        int i = 0;
        if (Vector.IsHardwareAccelerated && row.Length >= Vector<byte>.Count)
        {
            var kv = new Vector<int>(k);
            var accInts = acc;
            int n = Vector<int>.Count;
            for (; i <= row.Length - Vector<byte>.Count; i += Vector<byte>.Count)
            {
                Vector.Widen(new Vector<byte>(row[i..]), out var lo16, out var hi16);
                Vector.Widen(lo16, out var a, out var b);
                Vector.Widen(hi16, out var c, out var d);
                var dest = accInts[i..];
                (new Vector<int>(dest) + Vector.AsVectorInt32(a) * kv).CopyTo(dest);
                (new Vector<int>(dest[n..]) + Vector.AsVectorInt32(b) * kv).CopyTo(dest[n..]);
                (new Vector<int>(dest[(2 * n)..]) + Vector.AsVectorInt32(c) * kv).CopyTo(dest[(2 * n)..]);
                (new Vector<int>(dest[(3 * n)..]) + Vector.AsVectorInt32(d) * kv).CopyTo(dest[(3 * n)..]);
            }
        }
        for (; i < row.Length; i++) acc[i] += row[i] * k;
    }
}
