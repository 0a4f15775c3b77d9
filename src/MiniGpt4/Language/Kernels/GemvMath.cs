using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MiniGpt4.Language.Kernels;

/// <summary>
/// The inner loops of <see cref="CpuGemvKernel"/>: dot products of weight rows with one activation
/// row, float32 accumulation, with 512-bit (AVX-512F) or 256-bit (AVX2 + FMA) vectors.
/// </summary>
/// <remarks>
/// <para><b>bfloat16 weights.</b> A bf16 value is the high half of the float32 with the same bits,
/// so widening is exact. The row is read as 32-bit words, each holding elements <c>2i</c> (low half)
/// and <c>2i+1</c> (high half): <c>word &lt;&lt; 16</c> is element <c>2i</c> as a float32,
/// <c>word &amp; 0xFFFF0000</c> element <c>2i+1</c>. The activation row is widened once per call into
/// the matching "packed" order (<see cref="PackBf16"/>): per block of <c>2·lanes</c> elements the even
/// ones, then the odd ones; a tail shorter than a block stays in natural order and is summed
/// scalar. Every product of two bf16 values is exact in float32.</para>
/// <para><b>Four rows at a time.</b> Each activation vector is loaded once for four weight rows
/// (two accumulators per row for bf16: eight independent FMA chains).</para>
/// </remarks>
internal static unsafe class GemvMath
{
    /// <summary>Lanes of the float32 vectors the loops use (16, 8, or 0 when neither path is available).</summary>
    public static readonly int Lanes =
        Vector512.IsHardwareAccelerated && Avx512F.IsSupported ? 16 : Avx2.IsSupported && Fma.IsSupported ? 8 : 0;

    /// <summary>Widens one bf16 activation row of <paramref name="n"/> elements into packed float32 order (see remarks).</summary>
    public static void PackBf16(ushort* x, float* packed, long n)
    {
        var block = 2L * Lanes;
        var full = block == 0 ? 0 : n / block * block;
        for (long b = 0; b < full; b += block)
        {
            for (var i = 0; i < Lanes; i++)
            {
                packed[b + i] = Bf16ToFloat(x[b + 2 * i]);
                packed[b + Lanes + i] = Bf16ToFloat(x[b + 2 * i + 1]);
            }
        }
        for (var k = full; k < n; k++) packed[k] = Bf16ToFloat(x[k]);
    }

    /// <summary>
    /// <c>y[m, r] = Σₖ x[m, k] · w[r, k]</c> for rows <c>r ∈ [rowStart, rowEnd)</c> and every activation row
    /// <c>m &lt; rows</c>; float32 weights, activations and output (<paramref name="y"/> is <c>[rows, outFeatures]</c>).
    /// </summary>
    public static void RowsF32(float* w, float* x, float* y, long n, long outFeatures, int rows, long rowStart, long rowEnd)
    {
        var r = rowStart;
        var s = stackalloc float[4];
        for (; r + 4 <= rowEnd; r += 4)
        {
            for (var m = 0; m < rows; m++)
            {
                Dot4F32(w + r * n, n, x + m * n, s);
                var dst = y + m * outFeatures + r;
                dst[0] = s[0]; dst[1] = s[1]; dst[2] = s[2]; dst[3] = s[3];
            }
        }
        for (; r < rowEnd; r++)
            for (var m = 0; m < rows; m++) y[m * outFeatures + r] = Dot1F32(w + r * n, x + m * n, n);
    }

    /// <summary>
    /// As <see cref="RowsF32"/> for bf16 weights: <paramref name="packed"/> holds the activation rows
    /// widened by <see cref="PackBf16"/>; the output is bf16, rounded to nearest-even from the float32 sums.
    /// </summary>
    public static void RowsBf16(ushort* w, float* packed, ushort* y, long n, long outFeatures, int rows, long rowStart, long rowEnd)
    {
        var r = rowStart;
        var s = stackalloc float[4];
        for (; r + 4 <= rowEnd; r += 4)
        {
            for (var m = 0; m < rows; m++)
            {
                Dot4Bf16(w + r * n, n, packed + m * n, s);
                var dst = y + m * outFeatures + r;
                dst[0] = FloatToBf16(s[0]); dst[1] = FloatToBf16(s[1]); dst[2] = FloatToBf16(s[2]); dst[3] = FloatToBf16(s[3]);
            }
        }
        for (; r < rowEnd; r++)
            for (var m = 0; m < rows; m++) y[m * outFeatures + r] = FloatToBf16(Dot1Bf16(w + r * n, packed + m * n, n));
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

    private static void Dot4F32(float* w, long n, float* x, float* result)
    {
        float* w0 = w, w1 = w + n, w2 = w + 2 * n, w3 = w + 3 * n;
        long k = 0;
        float t0 = 0, t1 = 0, t2 = 0, t3 = 0;
        if (Lanes == 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; k + 16 <= n; k += 16)
            {
                var xv = Vector512.Load(x + k);
                a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(w0 + k), xv, a0);
                a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(w1 + k), xv, a1);
                a2 = Avx512F.FusedMultiplyAdd(Vector512.Load(w2 + k), xv, a2);
                a3 = Avx512F.FusedMultiplyAdd(Vector512.Load(w3 + k), xv, a3);
            }
            t0 = Vector512.Sum(a0); t1 = Vector512.Sum(a1); t2 = Vector512.Sum(a2); t3 = Vector512.Sum(a3);
        }
        else if (Lanes == 8)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; k + 8 <= n; k += 8)
            {
                var xv = Vector256.Load(x + k);
                a0 = Fma.MultiplyAdd(Vector256.Load(w0 + k), xv, a0);
                a1 = Fma.MultiplyAdd(Vector256.Load(w1 + k), xv, a1);
                a2 = Fma.MultiplyAdd(Vector256.Load(w2 + k), xv, a2);
                a3 = Fma.MultiplyAdd(Vector256.Load(w3 + k), xv, a3);
            }
            t0 = Vector256.Sum(a0); t1 = Vector256.Sum(a1); t2 = Vector256.Sum(a2); t3 = Vector256.Sum(a3);
        }
        for (; k < n; k++)
        {
            var xk = x[k];
            t0 = MathF.FusedMultiplyAdd(w0[k], xk, t0);
            t1 = MathF.FusedMultiplyAdd(w1[k], xk, t1);
            t2 = MathF.FusedMultiplyAdd(w2[k], xk, t2);
            t3 = MathF.FusedMultiplyAdd(w3[k], xk, t3);
        }
        result[0] = t0; result[1] = t1; result[2] = t2; result[3] = t3;
    }

    private static float Dot1F32(float* w, float* x, long n)
    {
        long k = 0;
        var t = 0f;
        if (Lanes == 16)
        {
            Vector512<float> a0 = default, a1 = default;
            for (; k + 32 <= n; k += 32)
            {
                a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k), Vector512.Load(x + k), a0);
                a1 = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k + 16), Vector512.Load(x + k + 16), a1);
            }
            for (; k + 16 <= n; k += 16) a0 = Avx512F.FusedMultiplyAdd(Vector512.Load(w + k), Vector512.Load(x + k), a0);
            t = Vector512.Sum(a0 + a1);
        }
        else if (Lanes == 8)
        {
            Vector256<float> a0 = default, a1 = default;
            for (; k + 16 <= n; k += 16)
            {
                a0 = Fma.MultiplyAdd(Vector256.Load(w + k), Vector256.Load(x + k), a0);
                a1 = Fma.MultiplyAdd(Vector256.Load(w + k + 8), Vector256.Load(x + k + 8), a1);
            }
            for (; k + 8 <= n; k += 8) a0 = Fma.MultiplyAdd(Vector256.Load(w + k), Vector256.Load(x + k), a0);
            t = Vector256.Sum(a0 + a1);
        }
        for (; k < n; k++) t = MathF.FusedMultiplyAdd(w[k], x[k], t);
        return t;
    }

    private static void Dot4Bf16(ushort* w, long n, float* p, float* result)
    {
        ushort* w0 = w, w1 = w + n, w2 = w + 2 * n, w3 = w + 3 * n;
        long k = 0;
        float t0 = 0, t1 = 0, t2 = 0, t3 = 0;
        if (Lanes == 16)
        {
            var hi = Vector512.Create(0xFFFF0000u);
            Vector512<float> e0 = default, e1 = default, e2 = default, e3 = default;
            Vector512<float> o0 = default, o1 = default, o2 = default, o3 = default;
            for (; k + 32 <= n; k += 32)
            {
                var xe = Vector512.Load(p + k);
                var xo = Vector512.Load(p + k + 16);
                var v0 = Vector512.Load((uint*)(w0 + k));
                var v1 = Vector512.Load((uint*)(w1 + k));
                var v2 = Vector512.Load((uint*)(w2 + k));
                var v3 = Vector512.Load((uint*)(w3 + k));
                e0 = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(v0, 16).AsSingle(), xe, e0);
                o0 = Avx512F.FusedMultiplyAdd((v0 & hi).AsSingle(), xo, o0);
                e1 = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(v1, 16).AsSingle(), xe, e1);
                o1 = Avx512F.FusedMultiplyAdd((v1 & hi).AsSingle(), xo, o1);
                e2 = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(v2, 16).AsSingle(), xe, e2);
                o2 = Avx512F.FusedMultiplyAdd((v2 & hi).AsSingle(), xo, o2);
                e3 = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(v3, 16).AsSingle(), xe, e3);
                o3 = Avx512F.FusedMultiplyAdd((v3 & hi).AsSingle(), xo, o3);
            }
            t0 = Vector512.Sum(e0 + o0); t1 = Vector512.Sum(e1 + o1); t2 = Vector512.Sum(e2 + o2); t3 = Vector512.Sum(e3 + o3);
        }
        else if (Lanes == 8)
        {
            var hi = Vector256.Create(0xFFFF0000u);
            Vector256<float> e0 = default, e1 = default, e2 = default, e3 = default;
            Vector256<float> o0 = default, o1 = default, o2 = default, o3 = default;
            for (; k + 16 <= n; k += 16)
            {
                var xe = Vector256.Load(p + k);
                var xo = Vector256.Load(p + k + 8);
                var v0 = Vector256.Load((uint*)(w0 + k));
                var v1 = Vector256.Load((uint*)(w1 + k));
                var v2 = Vector256.Load((uint*)(w2 + k));
                var v3 = Vector256.Load((uint*)(w3 + k));
                e0 = Fma.MultiplyAdd(Vector256.ShiftLeft(v0, 16).AsSingle(), xe, e0);
                o0 = Fma.MultiplyAdd((v0 & hi).AsSingle(), xo, o0);
                e1 = Fma.MultiplyAdd(Vector256.ShiftLeft(v1, 16).AsSingle(), xe, e1);
                o1 = Fma.MultiplyAdd((v1 & hi).AsSingle(), xo, o1);
                e2 = Fma.MultiplyAdd(Vector256.ShiftLeft(v2, 16).AsSingle(), xe, e2);
                o2 = Fma.MultiplyAdd((v2 & hi).AsSingle(), xo, o2);
                e3 = Fma.MultiplyAdd(Vector256.ShiftLeft(v3, 16).AsSingle(), xe, e3);
                o3 = Fma.MultiplyAdd((v3 & hi).AsSingle(), xo, o3);
            }
            t0 = Vector256.Sum(e0 + o0); t1 = Vector256.Sum(e1 + o1); t2 = Vector256.Sum(e2 + o2); t3 = Vector256.Sum(e3 + o3);
        }
        for (; k < n; k++)
        {
            var xk = p[k];
            t0 = MathF.FusedMultiplyAdd(Bf16ToFloat(w0[k]), xk, t0);
            t1 = MathF.FusedMultiplyAdd(Bf16ToFloat(w1[k]), xk, t1);
            t2 = MathF.FusedMultiplyAdd(Bf16ToFloat(w2[k]), xk, t2);
            t3 = MathF.FusedMultiplyAdd(Bf16ToFloat(w3[k]), xk, t3);
        }
        result[0] = t0; result[1] = t1; result[2] = t2; result[3] = t3;
    }

    private static float Dot1Bf16(ushort* w, float* p, long n)
    {
        long k = 0;
        var t = 0f;
        if (Lanes == 16)
        {
            var hi = Vector512.Create(0xFFFF0000u);
            Vector512<float> e = default, o = default;
            for (; k + 32 <= n; k += 32)
            {
                var v = Vector512.Load((uint*)(w + k));
                e = Avx512F.FusedMultiplyAdd(Vector512.ShiftLeft(v, 16).AsSingle(), Vector512.Load(p + k), e);
                o = Avx512F.FusedMultiplyAdd((v & hi).AsSingle(), Vector512.Load(p + k + 16), o);
            }
            t = Vector512.Sum(e + o);
        }
        else if (Lanes == 8)
        {
            var hi = Vector256.Create(0xFFFF0000u);
            Vector256<float> e = default, o = default;
            for (; k + 16 <= n; k += 16)
            {
                var v = Vector256.Load((uint*)(w + k));
                e = Fma.MultiplyAdd(Vector256.ShiftLeft(v, 16).AsSingle(), Vector256.Load(p + k), e);
                o = Fma.MultiplyAdd((v & hi).AsSingle(), Vector256.Load(p + k + 8), o);
            }
            t = Vector256.Sum(e + o);
        }
        for (; k < n; k++) t = MathF.FusedMultiplyAdd(Bf16ToFloat(w[k]), p[k], t);
        return t;
    }
}
