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
/// stream per row, which the hardware prefetcher follows at the read bandwidth of a core (measured 0.96–1.06 of a
/// STREAM-style sum on 7B-shaped bf16 rows, against 0.84–0.89 for four rows interleaved). With several activation
/// rows the weight row is read from memory once and again from L1. Two exceptions, both with the same per-element
/// arithmetic: rows too wide for the activation row to stay in L1 beside the stream (<see cref="WideRowElements"/>),
/// where four rows share each activation load, and <see cref="TileRows"/> or more activation rows, where the step is
/// bound by arithmetic and tiles of 4 × 2 products share every load and widening.</para>
/// <para><b>The bf16 dot (512-bit path)</b> has two accumulators, one for the low and one for the high halves of the
/// words (below), 32 elements per step in order, then <c>Sum(lo + hi)</c> and the scalar rest: few enough registers
/// per product that a tile of eight products fits the 32 vector registers.</para>
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
    public static void RowsBf16(ushort* w, ushort* x, float* y, long n, long outFeatures, int rows, long rowStart, long rowEnd)
    {
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
    /// Rows wider than this many bf16 values (8 KiB) leave no room in L1 for the activation row beside the weight
    /// stream: each weight line then costs an activation line from L2 as well. Measured here on 11 008-wide rows (the
    /// down projection): one row at a time 14–16 GB/s, four rows sharing each activation load 20–21 GB/s, against
    /// 27–29 GB/s for 4096-wide rows.
    /// </summary>
    public const long WideRowElements = 4096;

    /// <summary>
    /// <see cref="DotBf16"/> of four consecutive weight rows (<c>y[i] = dot(w + i·n, x)</c>) with one activation row,
    /// each row with its own accumulators in exactly <see cref="DotBf16"/>'s order, so every result is bit-identical to
    /// it; the activation is loaded once for the four rows. AVX-512 only.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotBf16Rows4(ushort* w, ushort* x, long n, float* y)
    {
        var hi = Vector512.Create(0xFFFF0000u);
        ushort* w0 = w, w1 = w + n, w2 = w + 2 * n, w3 = w + 3 * n;
        Vector512<float> l0 = default, u0 = default, l1 = default, u1 = default, l2 = default, u2 = default, l3 = default, u3 = default;
        long k = 0;
        for (; k + 32 <= n; k += 32)
        {
            var xv = Vector512.Load((uint*)(x + k));
            var xl = Vector512.ShiftLeft(xv, 16).AsSingle();
            var xh = (xv & hi).AsSingle();
            var v0 = Vector512.Load((uint*)(w0 + k));
            var v1 = Vector512.Load((uint*)(w1 + k));
            var v2 = Vector512.Load((uint*)(w2 + k));
            var v3 = Vector512.Load((uint*)(w3 + k));
            l0 = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(v0, 16).AsSingle(), xl, l0); u0 = Avx512F.FusedMultiplyAdd((v0 & hi).AsSingle(), xh, u0);
            l1 = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(v1, 16).AsSingle(), xl, l1); u1 = Avx512F.FusedMultiplyAdd((v1 & hi).AsSingle(), xh, u1);
            l2 = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(v2, 16).AsSingle(), xl, l2); u2 = Avx512F.FusedMultiplyAdd((v2 & hi).AsSingle(), xh, u2);
            l3 = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(v3, 16).AsSingle(), xl, l3); u3 = Avx512F.FusedMultiplyAdd((v3 & hi).AsSingle(), xh, u3);
        }
        y[0] = Tail(w0, x, k, n, Vector512.Sum(l0 + u0));
        y[1] = Tail(w1, x, k, n, Vector512.Sum(l1 + u1));
        y[2] = Tail(w2, x, k, n, Vector512.Sum(l2 + u2));
        y[3] = Tail(w3, x, k, n, Vector512.Sum(l3 + u3));
    }

    /// <summary>
    /// <see cref="DotBf16"/> of four consecutive weight rows with two activation rows (<c>y[i] = dot(w_i, x0)</c>,
    /// <c>y[stride + i] = dot(w_i, x1)</c>), each of the eight with its own accumulators in <see cref="DotBf16"/>'s order:
    /// every weight and activation vector is loaded and widened once for the tile.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DotBf16Rows4x2(ushort* w, ushort* x, long n, float* y, long stride)
    {
        var hi = Vector512.Create(0xFFFF0000u);
        ushort* w0 = w, w1 = w + n, w2 = w + 2 * n, w3 = w + 3 * n, x0 = x, x1 = x + n;
        Vector512<float> l00 = default, u00 = default, l10 = default, u10 = default, l20 = default, u20 = default, l30 = default, u30 = default;
        Vector512<float> l01 = default, u01 = default, l11 = default, u11 = default, l21 = default, u21 = default, l31 = default, u31 = default;
        long k = 0;
        for (; k + 32 <= n; k += 32)
        {
            var v0 = Vector512.Load((uint*)(w0 + k));
            var v1 = Vector512.Load((uint*)(w1 + k));
            var v2 = Vector512.Load((uint*)(w2 + k));
            var v3 = Vector512.Load((uint*)(w3 + k));
            Vector512<float> wl0 = Vector512.ShiftLeft(v0, 16).AsSingle(), wh0 = (v0 & hi).AsSingle();
            Vector512<float> wl1 = Vector512.ShiftLeft(v1, 16).AsSingle(), wh1 = (v1 & hi).AsSingle();
            Vector512<float> wl2 = Vector512.ShiftLeft(v2, 16).AsSingle(), wh2 = (v2 & hi).AsSingle();
            Vector512<float> wl3 = Vector512.ShiftLeft(v3, 16).AsSingle(), wh3 = (v3 & hi).AsSingle();
            var a = Vector512.Load((uint*)(x0 + k));
            Vector512<float> xl = Vector512.ShiftLeft(a, 16).AsSingle(), xh = (a & hi).AsSingle();
            l00 = Avx512F.FusedMultiplyAdd(wl0, xl, l00); u00 = Avx512F.FusedMultiplyAdd(wh0, xh, u00);
            l10 = Avx512F.FusedMultiplyAdd(wl1, xl, l10); u10 = Avx512F.FusedMultiplyAdd(wh1, xh, u10);
            l20 = Avx512F.FusedMultiplyAdd(wl2, xl, l20); u20 = Avx512F.FusedMultiplyAdd(wh2, xh, u20);
            l30 = Avx512F.FusedMultiplyAdd(wl3, xl, l30); u30 = Avx512F.FusedMultiplyAdd(wh3, xh, u30);
            a = Vector512.Load((uint*)(x1 + k));
            xl = Vector512.ShiftLeft(a, 16).AsSingle();
            xh = (a & hi).AsSingle();
            l01 = Avx512F.FusedMultiplyAdd(wl0, xl, l01); u01 = Avx512F.FusedMultiplyAdd(wh0, xh, u01);
            l11 = Avx512F.FusedMultiplyAdd(wl1, xl, l11); u11 = Avx512F.FusedMultiplyAdd(wh1, xh, u11);
            l21 = Avx512F.FusedMultiplyAdd(wl2, xl, l21); u21 = Avx512F.FusedMultiplyAdd(wh2, xh, u21);
            l31 = Avx512F.FusedMultiplyAdd(wl3, xl, l31); u31 = Avx512F.FusedMultiplyAdd(wh3, xh, u31);
        }
        y[0] = Tail(w0, x0, k, n, Vector512.Sum(l00 + u00));
        y[1] = Tail(w1, x0, k, n, Vector512.Sum(l10 + u10));
        y[2] = Tail(w2, x0, k, n, Vector512.Sum(l20 + u20));
        y[3] = Tail(w3, x0, k, n, Vector512.Sum(l30 + u30));
        y[stride] = Tail(w0, x1, k, n, Vector512.Sum(l01 + u01));
        y[stride + 1] = Tail(w1, x1, k, n, Vector512.Sum(l11 + u11));
        y[stride + 2] = Tail(w2, x1, k, n, Vector512.Sum(l21 + u21));
        y[stride + 3] = Tail(w3, x1, k, n, Vector512.Sum(l31 + u31));
    }

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
    public static ushort FloatToBf16(float value)
    {
        if (float.IsNaN(value)) return 0x7FC0;
        var u = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }

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
            var hi = Vector512.Create(0xFFFF0000u);
            Vector512<float> lo = default, up = default;
            for (; k + 128 <= n; k += 128)
            {
                var w0 = Vector512.Load((uint*)(w + k));
                var x0 = Vector512.Load((uint*)(x + k));
                var w1 = Vector512.Load((uint*)(w + k + 32));
                var x1 = Vector512.Load((uint*)(x + k + 32));
                var w2 = Vector512.Load((uint*)(w + k + 64));
                var x2 = Vector512.Load((uint*)(x + k + 64));
                var w3 = Vector512.Load((uint*)(w + k + 96));
                var x3 = Vector512.Load((uint*)(x + k + 96));
                lo = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(w0, 16).AsSingle(), Vector512.ShiftLeft(x0, 16).AsSingle(), lo);
                up = Avx512F.FusedMultiplyAdd((w0 & hi).AsSingle(), (x0 & hi).AsSingle(), up);
                lo = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(w1, 16).AsSingle(), Vector512.ShiftLeft(x1, 16).AsSingle(), lo);
                up = Avx512F.FusedMultiplyAdd((w1 & hi).AsSingle(), (x1 & hi).AsSingle(), up);
                lo = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(w2, 16).AsSingle(), Vector512.ShiftLeft(x2, 16).AsSingle(), lo);
                up = Avx512F.FusedMultiplyAdd((w2 & hi).AsSingle(), (x2 & hi).AsSingle(), up);
                lo = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(w3, 16).AsSingle(), Vector512.ShiftLeft(x3, 16).AsSingle(), lo);
                up = Avx512F.FusedMultiplyAdd((w3 & hi).AsSingle(), (x3 & hi).AsSingle(), up);
            }
            for (; k + 32 <= n; k += 32)
            {
                var wv = Vector512.Load((uint*)(w + k));
                var xv = Vector512.Load((uint*)(x + k));
                lo = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(wv, 16).AsSingle(), Vector512.ShiftLeft(xv, 16).AsSingle(), lo);
                up = Avx512F.FusedMultiplyAdd((wv & hi).AsSingle(), (xv & hi).AsSingle(), up);
            }
            sum = Vector512.Sum(lo + up);
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
