using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace MiniGpt4.Language.Kernels;

/// <summary>
/// The inner loops of single-query attention over one head's cache (<see cref="CpuDecoder"/>): the scores of every
/// cached key, the softmax weights, and the weighted sum of the cached values, each key and value read once, float32
/// arithmetic. Keys and values are rows of <c>headDim</c> values in the model's dtype, one per position, back to back.
/// </summary>
/// <remarks>
/// Small heads (8 and 16 values, as in small trained models such as stories260K) get loops that keep the whole head in
/// one vector: a call per position would cost more than its arithmetic there. Larger heads go position by position
/// with the loops over the head's values inside. Every result is a function of the head's own query, keys and values
/// only, so the decoder stays row-invariant.
/// </remarks>
internal static unsafe class AttentionMath
{
    /// <summary>
    /// <c>scores[j] = scale · dot(key_j, q)</c> for <c>j &lt; count</c>; returns their maximum. <paramref name="keys"/>
    /// holds <paramref name="count"/> rows of <paramref name="headDim"/> values (bf16 or float32).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float Scores(nint keys, float* q, int headDim, int count, bool bf16, float scale, float* scores)
    {
        var max = float.NegativeInfinity;
        var j = 0;
        if (headDim == 8 && GemvMath.Lanes != 0)
        {
            var qv = Vector256.Load(q);
            for (; j < count; j++)
            {
                var s = Vector256.Sum(Load8(keys, j * 8L, bf16) * qv) * scale;
                scores[j] = s;
                if (s > max) max = s;
            }
        }
        else if (headDim == 16 && GemvMath.Lanes == 16)
        {
            var qv = Vector512.Load(q);
            for (; j < count; j++)
            {
                var s = Vector512.Sum(GemvMath.Load(keys, j * 16L, bf16) * qv) * scale;
                scores[j] = s;
                if (s > max) max = s;
            }
        }
        else
        {
            for (; j < count; j++)
            {
                var key = keys + (nint)((long)j * headDim * (bf16 ? 2 : 4));
                var s = (bf16 ? DotBf16Natural((ushort*)key, q, headDim) : GemvMath.DotF32((float*)key, q, headDim)) * scale;
                scores[j] = s;
                if (s > max) max = s;
            }
        }
        return max;
    }

    /// <summary>
    /// <c>output[i] = Σ_j p[j] · value_j[i]</c> over <c>j &lt; count</c> (output overwritten); <paramref name="values"/> as
    /// the keys of <see cref="Scores"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void WeightedSum(nint values, float* p, int headDim, int count, bool bf16, float* output)
    {
        if (headDim == 8 && GemvMath.Lanes != 0)
        {
            // Four sums over positions j ≡ 0, 1, 2, 3 (mod 4), so consecutive positions do not wait for each other.
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            var j = 0;
            for (; j + 4 <= count; j += 4)
            {
                a0 += Load8(values, j * 8L, bf16) * Vector256.Create(p[j]);
                a1 += Load8(values, (j + 1) * 8L, bf16) * Vector256.Create(p[j + 1]);
                a2 += Load8(values, (j + 2) * 8L, bf16) * Vector256.Create(p[j + 2]);
                a3 += Load8(values, (j + 3) * 8L, bf16) * Vector256.Create(p[j + 3]);
            }
            for (; j < count; j++) a0 += Load8(values, j * 8L, bf16) * Vector256.Create(p[j]);
            ((a0 + a1) + (a2 + a3)).Store(output);
            return;
        }
        if (headDim == 16 && GemvMath.Lanes == 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            var j = 0;
            for (; j + 4 <= count; j += 4)
            {
                a0 += GemvMath.Load(values, j * 16L, bf16) * Vector512.Create(p[j]);
                a1 += GemvMath.Load(values, (j + 1) * 16L, bf16) * Vector512.Create(p[j + 1]);
                a2 += GemvMath.Load(values, (j + 2) * 16L, bf16) * Vector512.Create(p[j + 2]);
                a3 += GemvMath.Load(values, (j + 3) * 16L, bf16) * Vector512.Create(p[j + 3]);
            }
            for (; j < count; j++) a0 += GemvMath.Load(values, j * 16L, bf16) * Vector512.Create(p[j]);
            ((a0 + a1) + (a2 + a3)).Store(output);
            return;
        }
        new Span<float>(output, headDim).Clear();
        for (var j = 0; j < count; j++)
        {
            Axpy(p[j], values + (nint)((long)j * headDim * (bf16 ? 2 : 4)), bf16, output, headDim);
        }
    }

    /// <summary>
    /// <c>s[j] = exp(s[j] − max)</c> in place for <c>j &lt; count</c>; returns their sum (the softmax denominator), summed
    /// in a fixed order that depends only on <paramref name="count"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static float ExpSum(float* s, int count, float max)
    {
        var j = 0;
        var sum = 0f;
        if (GemvMath.Lanes == 16)
        {
            var m = Vector512.Create(max);
            var acc = Vector512<float>.Zero;
            for (; j + 16 <= count; j += 16)
            {
                var e = Vector512.Exp(Vector512.Load(s + j) - m);
                e.Store(s + j);
                acc += e;
            }
            sum = Vector512.Sum(acc);
        }
        for (; j < count; j++) sum += s[j] = MathF.Exp(s[j] - max);
        return sum;
    }

    /// <summary>Eight values of a float32 or bf16 row from element <paramref name="i"/>, as float32.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> Load8(nint row, long i, bool bf16)
        => bf16 ? GemvMath.WidenBf16x8((ushort*)row + i) : Vector256.Load((float*)row + i);

    /// <summary>The dot product of a bf16 row in natural order (a cached key) and a float32 row.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float DotBf16Natural(ushort* w, float* x, long n)
    {
        long k = 0;
        var sum = 0f;
        if (GemvMath.Lanes == 16)
        {
            Vector512<float> a = default;
            for (; k + 16 <= n; k += 16) a = Avx512F.FusedMultiplyAdd(GemvMath.WidenBf16(w + k), Vector512.Load(x + k), a);
            sum = Vector512.Sum(a);
        }
        else if (GemvMath.Lanes == 8)
        {
            Vector256<float> a = default;
            for (; k + 8 <= n; k += 8) a = Fma.MultiplyAdd(GemvMath.WidenBf16x8(w + k), Vector256.Load(x + k), a);
            sum = Vector256.Sum(a);
        }
        for (; k < n; k++) sum = MathF.FusedMultiplyAdd(GemvMath.Bf16ToFloat(w[k]), x[k], sum);
        return sum;
    }

    /// <summary><c>acc[i] += p · v[i]</c> for a float32 or bf16 row (a cached value); element by element, so any vector width gives the same bits.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Axpy(float p, nint v, bool bf16, float* acc, long n)
    {
        long k = 0;
        if (GemvMath.Lanes == 16)
        {
            var pv = Vector512.Create(p);
            for (; k + 16 <= n; k += 16) Avx512F.FusedMultiplyAdd(GemvMath.Load(v, k, bf16), pv, Vector512.Load(acc + k)).Store(acc + k);
        }
        if (GemvMath.Lanes != 0)
        {
            var pv = Vector256.Create(p);
            for (; k + 8 <= n; k += 8) Fma.MultiplyAdd(Load8(v, k, bf16), pv, Vector256.Load(acc + k)).Store(acc + k);
        }
        for (; k < n; k++) acc[k] = MathF.FusedMultiplyAdd(bf16 ? GemvMath.Bf16ToFloat(((ushort*)v)[k]) : ((float*)v)[k], p, acc[k]);
    }
}
