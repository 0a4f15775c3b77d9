using MiniGpt4.Runtime;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MiniGpt4.Language.Kernels;

/// <summary>
/// The inner loops of the CPU decode path (<see cref="CpuDecoder"/>, <see cref="CpuGemvKernel"/>): dot products of
/// weight rows with activation rows, float32 accumulation, with 512-bit (AVX-512F) or 256-bit (AVX2 + FMA) vectors.
/// </summary>
/// <remarks>
/// <para><b>One canonical dot per element.</b> Every output element <c>y[m, r]</c> is <see cref="DotBf16"/> or
/// <see cref="DotF32"/> of weight row <c>r</c> and activation row <c>m</c>, a function of those two rows only: the
/// same accumulators in the same order whatever the number of activation rows, the rows a thread is given or the
/// thread count. So a conversation's logits are bit-identical alone or batched with others, at 1 or 2 threads.</para>
/// <para><b>Streaming.</b> A dot walks one weight row front to back (four vectors per iteration): one sequential
/// stream per row, which an AMD core's prefetchers follow at its read bandwidth (measured 0.96–1.06 of a
/// STREAM-style sum on 7B-shaped bf16 rows, against 0.84–0.89 for four rows interleaved). With several activation
/// rows the weight row is read from memory once and again from L1. Two exceptions, both with the same per-element
/// arithmetic: rows read four at a time, sharing each activation load (<see cref="WideRowElements"/>: rows too wide
/// for the activation row to stay in L1 beside the stream, and every row on Intel CPUs), and <see cref="TileRows"/>
/// or more activation rows, where the step is bound by arithmetic and tiles share every load and widening.</para>
/// <para><b>The bf16 dot (512-bit path)</b> is what <c>vdpbf16ps</c> computes, so that a CPU with AVX512-BF16 runs
/// it in one instruction per 32 elements (<see cref="NativeKernels"/>) and every other AVX-512 CPU gets the same bits
/// from two fused multiply-adds: lane i of a group of 32 elements adds the product of elements 2i+1, then of 2i, each
/// add rounded to float32. Groups alternate between two accumulators (a: groups 0, 2, 4, ...; b: 1, 3, 5, ...), whose
/// sum <c>a + b</c> is reduced in a fixed order (<see cref="Sum16"/>), then the elements past the last whole group are
/// added one by one. (The instruction also treats float32 subnormals as zero, in its inputs and its sums; bf16
/// and weights of a model, and their products and sums, stay far above 1.2e-38 in magnitude, so the two paths agree on real
/// values; the tests compare them bit for bit.)</para>
/// <para><b>bfloat16.</b> A bf16 value is the high half of the float32 with the same bits, so widening is exact.
/// A bf16 model's activations are bf16 values too (it rounds every activation, as transformers does), so both rows
/// are read as 32-bit words, each holding elements <c>2i</c> (low half) and <c>2i+1</c> (high half):
/// <c>word &lt;&lt; 16</c> is element <c>2i</c> as a float32, <c>word &amp; 0xFFFF0000</c> element <c>2i+1</c>.
/// Every product of two bf16 values is exact in float32. Reading the activations as bf16 rather than widened
/// float32 halves their loads: measured 0.96 of a STREAM-style sum on 4096-wide rows, against 0.91 with float32
/// activations.</para>
/// </remarks>
internal static unsafe class GemvMath
{
    /// <summary>Lanes of the float32 vectors the loops use (16, 8, or 0 when neither path is available).</summary>
    public static readonly int Lanes =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? 16 : Avx2.IsSupported && Fma.IsSupported ? 8 : 0;

    /// <summary><c>y[m, r] = dot(w[r], x[m])</c> for weight rows <c>r ∈ [rowStart, rowEnd)</c> and activation rows <c>m &lt; rows</c> (float32).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RowsF32(float* w, float* x, float* y, long n, long outFeatures, int rows, long rowStart, long rowEnd)
    {
        for (var r = rowStart; r < rowEnd; r++)
            for (var m = 0; m < rows; m++) y[m * outFeatures + r] = DotF32(w + r * n, x + m * n, n);
    }

    /// <summary>
    /// As <see cref="RowsF32"/> for bf16 weights and bf16 activations (float32 sums). With the 512-bit path, rows wider
    /// than <see cref="WideRowElements"/> go four at a time (<see cref="DotBf16Rows4"/>) and <see cref="TileRows"/> or
    /// more activation rows in tiles (<see cref="DotBf16Rows4x2"/>); every element is still <see cref="DotBf16"/>'s.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RowsBf16(ushort* w, ushort* x, float* y, long n, long outFeatures, int rows, long rowStart, long rowEnd, bool native = true)
    {
        if (native && Lanes == 16 && NativeKernels.HasBf16Dot)
        {
            NativeKernels.Bf16Rows(w, x, y, n, outFeatures, rows, rowStart, rowEnd, WideRowElements);
            return;
        }
        var r = rowStart;
        if (Lanes == 16 && (rows >= TileRows || n > WideRowElements))
            for (; r + 4 <= rowEnd; r += 4)
            {
                var m = 0;
                if (rows >= TileRows)
                    for (; m + 2 <= rows; m += 2) DotBf16Rows4x2(w + r * n, x + m * n, n, y + m * outFeatures + r, outFeatures);
                for (; m < rows; m++) DotBf16Rows4(w + r * n, x + m * n, n, y + m * outFeatures + r);
            }
        for (; r < rowEnd; r++)
            for (var m = 0; m < rows; m++) y[m * outFeatures + r] = DotBf16(w + r * n, x + m * n, n);
    }

    /// <summary>
    /// Activation rows from which bf16 products go in tiles of four weight rows by two activation rows
    /// (<see cref="DotBf16Rows4x2"/>): each weight and activation vector is then loaded and widened once per tile
    /// instead of once per product, and the tile's 16 accumulator chains keep the FMA units busy (one product's two
    /// chains wait on the FMA latency). Measured here on an 11 008 × 4096 matrix, tiles against one product at a time:
    /// 8 rows 13.0 against 20.7 ms on one thread and 6.9 against 9.2 ms on two; 3 rows 7.2 against 9.3 and 4.4 against
    /// 5.2 ms; 2 rows 6.1 against 6.3 and 3.7 against 4.2 ms.
    /// </summary>
    public const int TileRows = 2;

    /// <summary>
    /// With one activation row, weight rows wider than this many bf16 values go four at a time
    /// (<see cref="DotBf16Rows4"/>); narrower ones one at a time. The results are the same bits either way; only the
    /// memory access pattern differs, and which one is faster depends on the CPU:
    /// <list type="bullet">
    /// <item>AMD (measured on Zen 4): 4096. Rows wider than 8 KiB leave no room in L1 for the activation row beside the
    /// weight stream, so each weight line costs an activation line from L2 as well: on 11 008-wide rows (the down
    /// projection) one row at a time read 14–16 GB/s, four rows sharing each activation load 20–21 GB/s; narrower rows
    /// read best as one sequential stream each (27–29 GB/s on 4096-wide rows).</item>
    /// <item>Intel (measured on a Xeon of family 6, model 207): every row four at a time. One row of an 11 008 × 4096
    /// matrix at a time read 10.2–11.2 GB/s on one thread, four at a time 13.2–13.7 (managed path 8.4–10.2 and
    /// 11.8–12.9; two threads 13.6–18.2 and 23.8–23.9); a bf16 decode step at two threads went from 6.83–7.45 to
    /// 7.98–8.16 tokens/s. (Intel's L2 streamer follows a stream within one 4 KiB page, so four rows keep four pages
    /// in flight where one row restarts at each page boundary.)</item>
    /// </list>
    /// </summary>
    public static readonly long WideRowElements = Runtime.CpuFeatures.IsIntel ? 0 : 4096;

    /// <summary>
    /// <see cref="DotBf16"/> of four consecutive weight rows (<c>y[i] = dot(w + i·n, x)</c>) with one activation row,
    /// each row with its own accumulators in exactly <see cref="DotBf16"/>'s order, so every result is bit-identical to
    /// it; the activation is loaded once for the four rows. AVX-512 only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotBf16Rows4(ushort* w, ushort* x, long n, float* y)
    {
        ushort* w0 = w, w1 = w + n, w2 = w + 2 * n, w3 = w + 3 * n;
        Vector512<float> a0 = default, b0 = default, a1 = default, b1 = default, a2 = default, b2 = default, a3 = default, b3 = default;
        long k = 0;
        for (; k + 64 <= n; k += 64)
        {
            var x0 = Vector512.Load((uint*)(x + k));
            var x1 = Vector512.Load((uint*)(x + k + 32));
            a0 = Pair(Vector512.Load((uint*)(w0 + k)), x0, a0); b0 = Pair(Vector512.Load((uint*)(w0 + k + 32)), x1, b0);
            a1 = Pair(Vector512.Load((uint*)(w1 + k)), x0, a1); b1 = Pair(Vector512.Load((uint*)(w1 + k + 32)), x1, b1);
            a2 = Pair(Vector512.Load((uint*)(w2 + k)), x0, a2); b2 = Pair(Vector512.Load((uint*)(w2 + k + 32)), x1, b2);
            a3 = Pair(Vector512.Load((uint*)(w3 + k)), x0, a3); b3 = Pair(Vector512.Load((uint*)(w3 + k + 32)), x1, b3);
        }
        if (k + 32 <= n)
        {
            var x0 = Vector512.Load((uint*)(x + k));
            a0 = Pair(Vector512.Load((uint*)(w0 + k)), x0, a0);
            a1 = Pair(Vector512.Load((uint*)(w1 + k)), x0, a1);
            a2 = Pair(Vector512.Load((uint*)(w2 + k)), x0, a2);
            a3 = Pair(Vector512.Load((uint*)(w3 + k)), x0, a3);
            k += 32;
        }
        y[0] = Tail(w0, x, k, n, Sum16(a0 + b0));
        y[1] = Tail(w1, x, k, n, Sum16(a1 + b1));
        y[2] = Tail(w2, x, k, n, Sum16(a2 + b2));
        y[3] = Tail(w3, x, k, n, Sum16(a3 + b3));
    }

    /// <summary>
    /// <see cref="DotBf16"/> of four consecutive weight rows with two activation rows (<c>y[i] = dot(w_i, x0)</c>,
    /// <c>y[stride + i] = dot(w_i, x1)</c>), each of the eight with its own accumulators in <see cref="DotBf16"/>'s order:
    /// every weight and activation vector is loaded and widened once for the tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotBf16Rows4x2(ushort* w, ushort* x, long n, float* y, long stride)
    {
        ushort* w0 = w, w1 = w + n, w2 = w + 2 * n, w3 = w + 3 * n, x0 = x, x1 = x + n;
        Vector512<float> a00 = default, a10 = default, a20 = default, a30 = default, a01 = default, a11 = default, a21 = default, a31 = default;
        Vector512<float> b00 = default, b10 = default, b20 = default, b30 = default, b01 = default, b11 = default, b21 = default, b31 = default;
        long k = 0;
        for (; k + 32 <= n; k += 32)
        {
            // Groups alternate between the a and b accumulators (k / 32 even: a).
            var second = (k & 32) != 0;
            var hi = Vector512.Create(0xFFFF0000u);
            var v0 = Vector512.Load((uint*)(w0 + k));
            var v1 = Vector512.Load((uint*)(w1 + k));
            var v2 = Vector512.Load((uint*)(w2 + k));
            var v3 = Vector512.Load((uint*)(w3 + k));
            Vector512<float> wl0 = Vector512.ShiftLeft(v0, 16).AsSingle(), wh0 = (v0 & hi).AsSingle();
            Vector512<float> wl1 = Vector512.ShiftLeft(v1, 16).AsSingle(), wh1 = (v1 & hi).AsSingle();
            Vector512<float> wl2 = Vector512.ShiftLeft(v2, 16).AsSingle(), wh2 = (v2 & hi).AsSingle();
            Vector512<float> wl3 = Vector512.ShiftLeft(v3, 16).AsSingle(), wh3 = (v3 & hi).AsSingle();
            var c = Vector512.Load((uint*)(x0 + k));
            Vector512<float> xl = Vector512.ShiftLeft(c, 16).AsSingle(), xh = (c & hi).AsSingle();
            var d = Vector512.Load((uint*)(x1 + k));
            Vector512<float> yl = Vector512.ShiftLeft(d, 16).AsSingle(), yh = (d & hi).AsSingle();
            if (!second)
            {
                a00 = Fma2(wh0, xh, wl0, xl, a00); a10 = Fma2(wh1, xh, wl1, xl, a10); a20 = Fma2(wh2, xh, wl2, xl, a20); a30 = Fma2(wh3, xh, wl3, xl, a30);
                a01 = Fma2(wh0, yh, wl0, yl, a01); a11 = Fma2(wh1, yh, wl1, yl, a11); a21 = Fma2(wh2, yh, wl2, yl, a21); a31 = Fma2(wh3, yh, wl3, yl, a31);
            }
            else
            {
                b00 = Fma2(wh0, xh, wl0, xl, b00); b10 = Fma2(wh1, xh, wl1, xl, b10); b20 = Fma2(wh2, xh, wl2, xl, b20); b30 = Fma2(wh3, xh, wl3, xl, b30);
                b01 = Fma2(wh0, yh, wl0, yl, b01); b11 = Fma2(wh1, yh, wl1, yl, b11); b21 = Fma2(wh2, yh, wl2, yl, b21); b31 = Fma2(wh3, yh, wl3, yl, b31);
            }
        }
        y[0] = Tail(w0, x0, k, n, Sum16(a00 + b00));
        y[1] = Tail(w1, x0, k, n, Sum16(a10 + b10));
        y[2] = Tail(w2, x0, k, n, Sum16(a20 + b20));
        y[3] = Tail(w3, x0, k, n, Sum16(a30 + b30));
        y[stride] = Tail(w0, x1, k, n, Sum16(a01 + b01));
        y[stride + 1] = Tail(w1, x1, k, n, Sum16(a11 + b11));
        y[stride + 2] = Tail(w2, x1, k, n, Sum16(a21 + b21));
        y[stride + 3] = Tail(w3, x1, k, n, Sum16(a31 + b31));
    }

    /// <summary>
    /// The canonical sum of sixteen lanes, <c>(i + i+8)</c>, then <c>(i + i+4)</c>, then <c>(0+2) + (1+3)</c>, written
    /// out rather than left to <c>Vector512.Sum</c>, whose order is the runtime's to choose: the native kernels sum the
    /// same way.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static float Sum16(Vector512<float> f)
    {
        var t8 = f.GetLower() + f.GetUpper();
        var t4 = t8.GetLower() + t8.GetUpper();
        return (t4.GetElement(0) + t4.GetElement(2)) + (t4.GetElement(1) + t4.GetElement(3));
    }

    /// <summary>
    /// One group of 32 bf16 pairs added to <paramref name="acc"/> as <c>vdpbf16ps</c> does: in lane i the product of
    /// elements 2i+1 (the words' high halves), then of elements 2i (low halves), each add rounded to float32.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Pair(Vector512<uint> w, Vector512<uint> x, Vector512<float> acc)
    {
        var hi = Vector512.Create(0xFFFF0000u);
        acc = Avx512F.FusedMultiplyAdd((w & hi).AsSingle(), (x & hi).AsSingle(), acc);
        return Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(w, 16).AsSingle(), Vector512.ShiftLeft(x, 16).AsSingle(), acc);
    }

    /// <summary><see cref="Pair"/> on words already split into high (odd) and low (even) halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector512<float> Fma2(Vector512<float> wh, Vector512<float> xh, Vector512<float> wl, Vector512<float> xl, Vector512<float> acc)
        => Avx512F.FusedMultiplyAdd(wl, xl, Avx512F.FusedMultiplyAdd(wh, xh, acc));

    /// <summary>The bf16 dot's scalar rest: <paramref name="sum"/> plus elements <c>k .. n−1</c>, in order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Tail(ushort* w, ushort* x, long k, long n, float sum)
    {
        for (; k < n; k++) sum = MathF.FusedMultiplyAdd(Bf16ToFloat(w[k]), Bf16ToFloat(x[k]), sum);
        return sum;
    }

    /// <summary>The float32 with the bits of <paramref name="bits"/> in its high half (exact).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float Bf16ToFloat(ushort bits) => BitConverter.Int32BitsToSingle(bits << 16);

    /// <summary>float32 → bf16, round to nearest-even; NaN becomes the quiet NaN 0x7FC0 (libtorch's <c>c10::BFloat16</c> rule).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static ushort FloatToBf16(float value) => Runtime.FloatConversion.Bf16Bits(value);

    /// <summary><paramref name="value"/> rounded to the nearest bf16, as a float32 (what a bf16 tensor would hold).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static float RoundToBf16(float value) => Bf16ToFloat(FloatToBf16(value));

    /// <summary>The dot product of a float32 weight row and a float32 activation row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotF32(float* w, float* x, long n)
    {
        long k = 0;
        var sum = 0f;
        if (Lanes == 16)
        {
            Vector512<float> a = default, b = default, c = default, d = default;
            for (; k + 64 <= n; k += 64)
            {
                a = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k), Vector512.Load(x + k), a);
                b = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k + 16), Vector512.Load(x + k + 16), b);
                c = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k + 32), Vector512.Load(x + k + 32), c);
                d = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k + 48), Vector512.Load(x + k + 48), d);
            }
            for (; k + 16 <= n; k += 16) a = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k), Vector512.Load(x + k), a);
            sum = Vector512.Sum((a + b) + (c + d));
            if (k + 8 <= n) // an 8-wide rest (head dimensions of small models)
            {
                sum += Vector256.Sum(Fma.MultiplyAdd(Vector256.Load(w + k), Vector256.Load(x + k), Vector256<float>.Zero));
                k += 8;
            }
        }
        else if (Lanes == 8)
        {
            Vector256<float> a = default, b = default, c = default, d = default;
            for (; k + 32 <= n; k += 32)
            {
                a = Fma.MultiplyAdd(Vector256.Load(w + k), Vector256.Load(x + k), a);
                b = Fma.MultiplyAdd(Vector256.Load(w + k + 8), Vector256.Load(x + k + 8), b);
                c = Fma.MultiplyAdd(Vector256.Load(w + k + 16), Vector256.Load(x + k + 16), c);
                d = Fma.MultiplyAdd(Vector256.Load(w + k + 24), Vector256.Load(x + k + 24), d);
            }
            for (; k + 8 <= n; k += 8) a = Fma.MultiplyAdd(Vector256.Load(w + k), Vector256.Load(x + k), a);
            sum = Vector256.Sum((a + b) + (c + d));
        }
        for (; k < n; k++) sum = MathF.FusedMultiplyAdd(w[k], x[k], sum);
        return sum;
    }

    /// <summary>The dot product of a bf16 weight row and a bf16 activation row (both in natural order, read as words).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float DotBf16(ushort* w, ushort* x, long n)
    {
        long k = 0;
        var sum = 0f;
        if (Lanes == 16)
        {
            Vector512<float> a = default, b = default;
            for (; k + 64 <= n; k += 64)
            {
                a = Pair(Vector512.Load((uint*)(w + k)), Vector512.Load((uint*)(x + k)), a);
                b = Pair(Vector512.Load((uint*)(w + k + 32)), Vector512.Load((uint*)(x + k + 32)), b);
            }
            if (k + 32 <= n)
            {
                a = Pair(Vector512.Load((uint*)(w + k)), Vector512.Load((uint*)(x + k)), a);
                k += 32;
            }
            sum = Sum16(a + b);
        }
        else if (Lanes == 8)
        {
            var hi = Vector256.Create(0xFFFF0000u);
            Vector256<float> a = default, b = default, c = default, d = default;
            for (; k + 32 <= n; k += 32)
            {
                var w0 = Vector256.Load((uint*)(w + k));
                var w1 = Vector256.Load((uint*)(w + k + 16));
                var x0 = Vector256.Load((uint*)(x + k));
                var x1 = Vector256.Load((uint*)(x + k + 16));
                a = Fma.MultiplyAdd(Vector256.ShiftLeft(w0, 16).AsSingle(), Vector256.ShiftLeft(x0, 16).AsSingle(), a);
                b = Fma.MultiplyAdd((w0 & hi).AsSingle(), (x0 & hi).AsSingle(), b);
                c = Fma.MultiplyAdd(Vector256.ShiftLeft(w1, 16).AsSingle(), Vector256.ShiftLeft(x1, 16).AsSingle(), c);
                d = Fma.MultiplyAdd((w1 & hi).AsSingle(), (x1 & hi).AsSingle(), d);
            }
            for (; k + 16 <= n; k += 16)
            {
                var w0 = Vector256.Load((uint*)(w + k));
                var x0 = Vector256.Load((uint*)(x + k));
                a = Fma.MultiplyAdd(Vector256.ShiftLeft(w0, 16).AsSingle(), Vector256.ShiftLeft(x0, 16).AsSingle(), a);
                b = Fma.MultiplyAdd((w0 & hi).AsSingle(), (x0 & hi).AsSingle(), b);
            }
            sum = Vector256.Sum((a + b) + (c + d));
        }
        return Tail(w, x, k, n, sum);
    }

    /// <summary>Sixteen bf16 values in natural order widened to float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector512<float> WidenBf16(ushort* v)
        => Vector512.ShiftLeft(Avx512F.ConvertToVector512UInt32(Vector256.Load(v)), 16).AsSingle();

    /// <summary>Eight bf16 values in natural order widened to float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    internal static Vector256<float> WidenBf16x8(ushort* v)
        => Vector256.ShiftLeft(Avx2.ConvertToVector256Int32(Vector128.Load(v)), 16).AsSingle();

    /// <summary>Rounds <paramref name="n"/> float32 values in place to the nearest bf16 (as <see cref="RoundToBf16(float)"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void RoundToBf16(float* v, long n)
    {
        long i = 0;
        if (Lanes == 16)
            for (; i + 16 <= n; i += 16) RoundToBf16(Vector512.Load(v + i)).Store(v + i);
        for (; i < n; i++) v[i] = RoundToBf16(v[i]);
    }

    /// <summary>Writes <paramref name="n"/> float32 values as bf16, rounded to nearest-even (as <see cref="FloatToBf16"/>).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void ToBf16(float* src, ushort* dst, long n)
    {
        long i = 0;
        if (Lanes == 16)
            for (; i + 16 <= n; i += 16) StoreBf16(Vector512.Load(src + i), dst + i);
        for (; i < n; i++) dst[i] = FloatToBf16(src[i]);
    }

    /// <summary>Writes sixteen float32 values as bf16, rounded as <see cref="FloatToBf16"/> (AVX-512).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void StoreBf16(Vector512<float> v, ushort* dst)
        => Avx512F.ConvertToVector256UInt16(Vector512.ShiftRightLogical(RoundToBf16(v).AsUInt32(), 16)).Store(dst);

    /// <summary>Sixteen values rounded to bf16 (nearest-even; NaN to the quiet NaN), as float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> RoundToBf16(Vector512<float> v)
    {
        var u = v.AsUInt32();
        var rounded = (u + Vector512.Create(0x7FFFu) + ((u >> 16) & Vector512<uint>.One)) & Vector512.Create(0xFFFF0000u);
        return Vector512.ConditionalSelect(Vector512.Equals(v, v).AsUInt32(), rounded, Vector512.Create(0x7FC00000u)).AsSingle();
    }

    /// <summary>Sixteen values of a float32 or bf16 row, as float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Load(nint row, long i, bool bf16)
        => bf16 ? WidenBf16((ushort*)row + i) : Vector512.Load((float*)row + i);

    /// <summary>The sum of squares of <paramref name="n"/> values, in a fixed order.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float SumOfSquares(float* x, long n)
    {
        long i = 0;
        var sum = 0f;
        if (Lanes == 16)
        {
            var acc = Vector512<float>.Zero;
            for (; i + 16 <= n; i += 16)
            {
                var v = Vector512.Load(x + i);
                acc = Avx512F.FusedMultiplyAdd(v, v, acc);
            }
            sum = Vector512.Sum(acc);
        }
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(x[i], x[i], sum);
        return sum;
    }
}
