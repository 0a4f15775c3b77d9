using MiniGpt4.Runtime;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MiniGpt4.Language.Kernels;
using static MiniGpt4.Language.Quantization.QuantLayout;

namespace MiniGpt4.Language.Quantization;

/// <summary>The instruction sets the quantized dot products can use (tests select each one).</summary>
internal enum QuantIsa
{
    /// <summary>Plain C#: the reference.</summary>
    Scalar,

    /// <summary>AVX2 <c>vpmaddubsw</c> + <c>vpmaddwd</c> (no VNNI).</summary>
    Avx2,

    /// <summary>AVX-VNNI <c>vpdpbusd</c> on 256-bit vectors.</summary>
    AvxVnni,

    /// <summary>AVX-512BW <c>vpmaddubsw</c> + <c>vpmaddwd</c> on 512-bit vectors for Q8, the AVX2 loop for Q4 (CPUs with AVX-512 but no AVX-VNNI, such as AMD Zen 4).</summary>
    Avx512Bw,

    /// <summary>AVX512-VNNI <c>vpdpbusd</c> on 512-bit vectors, in the optional native library (<see cref="NativeKernels"/>).</summary>
    Avx512Vnni,
}

/// <summary>
/// Decode-time products of quantized weights (<see cref="QuantLayout"/>) with quantized activations
/// (<see cref="QuantizedActivations"/>): integer dot products per block, scaled once per superblock.
/// </summary>
/// <remarks>
/// <para><b>One canonical result.</b> Each block's integer dot product is exact, so every instruction set gets the
/// same 16 integers per superblock; the float part is fixed: lane <c>i</c> accumulates
/// <c>fma(float(sum_i), scale_w,i · scale_x,i, acc_i)</c> over the superblocks in order, and the 16 lanes are summed
/// as <c>((a[i] + a[i+8]) + (a[i+4] + a[i+12])) …</c> (see <see cref="Reduce"/>). So every path, the scalar reference
/// included, gives bit-identical results, and a row's result never depends on the other rows or on the thread count.</para>
/// <para><b>Why 256-bit VNNI.</b> .NET 10 exposes <c>vpdpbusd</c> only in its VEX 256-bit form (<see cref="AvxVnni"/>)
/// and in AVX10, and has no class for AVX512-VNNI. CPUs with AVX-512 but neither (AMD Zen 4) take the AVX-512BW path:
/// Q8 with the AVX2 arithmetic on 512-bit vectors, 4-13 % faster than 256-bit there at one thread (equal at two, where
/// memory sets the pace); Q4 keeps the 256-bit loop (its 512-bit form measured 12-15 % slower).</para>
/// </remarks>
internal static unsafe class QuantMath
{
    /// <summary>The fastest path this machine has.</summary>
    public static readonly QuantIsa Best = NativeKernels.HasVnni512 ? QuantIsa.Avx512Vnni
        : AvxVnni.IsSupported ? QuantIsa.AvxVnni
        : Avx512BW.IsSupported && Vector512.IsHardwareAccelerated ? QuantIsa.Avx512Bw
        : Avx2.IsSupported ? QuantIsa.Avx2 : QuantIsa.Scalar;

    /// <summary>True when <paramref name="isa"/> runs on this machine.</summary>
    public static bool IsSupported(QuantIsa isa) => isa switch
    {
        QuantIsa.Avx512Vnni => NativeKernels.HasVnni512,
        QuantIsa.AvxVnni => AvxVnni.IsSupported,
        QuantIsa.Avx512Bw => Avx512BW.IsSupported && Vector512.IsHardwareAccelerated,
        QuantIsa.Avx2 => Avx2.IsSupported,
        _ => true,
    };

    /// <summary>
    /// <c>y[m, r] = dot(w[r], x[m])</c> for packed weight rows <c>r ∈ [rowStart, rowEnd)</c> of <paramref name="n"/>
    /// inputs and quantized activation rows <c>m &lt; rows</c>; y is float32 <c>[rows, outFeatures]</c>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void Rows(QuantFormat format, byte* w, ushort* scales, QuantizedActivations x, float* y, long n, long outFeatures,
        int rows, long rowStart, long rowEnd, QuantIsa isa)
    {
        long rowBytes = RowBytes(format, n), blocks = BlocksPerRow(n);
        if (isa == QuantIsa.Avx512Vnni)
        {
            NativeKernels.QuantRows(format == QuantFormat.Q8 ? 8 : 4, w, scales, x.Start, x.RowStride, y, blocks / SuperBlocks, outFeatures,
                rows, rowStart, rowEnd);
            return;
        }
        for (var r = rowStart; r < rowEnd; r++)
            for (var m = 0; m < rows; m++)
                y[m * outFeatures + r] = Dot(format, w + r * rowBytes, scales + r * blocks, x, m, blocks / SuperBlocks, isa);
    }

    /// <summary>The dot product of one packed row and activation row <paramref name="m"/> over <paramref name="supers"/> superblocks.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Dot(QuantFormat format, byte* w, ushort* scales, QuantizedActivations x, int m, long supers, QuantIsa isa)
    {
        sbyte* xq = x.Values(m);
        float* dx = x.Scales(m);
        var offsets = format == QuantFormat.Q8 ? x.Offsets8(m) : x.Offsets4(m);
        return isa switch
        {
            QuantIsa.Avx512Vnni => throw new NotSupportedException("The native kernels compute whole rows (Rows)."),
            QuantIsa.AvxVnni => format == QuantFormat.Q8 ? Q8Vnni(w, scales, xq, dx, offsets, supers) : Q4Vnni(w, scales, xq, dx, offsets, supers),
            QuantIsa.Avx512Bw => format == QuantFormat.Q8 ? Q8Avx512(w, scales, xq, dx, supers) : Q4Avx2(w, scales, xq, dx, offsets, supers),
            QuantIsa.Avx2 => format == QuantFormat.Q8 ? Q8Avx2(w, scales, xq, dx, supers) : Q4Avx2(w, scales, xq, dx, offsets, supers),
            _ => DotScalar(format, w, scales, xq, dx, supers),
        };
    }

    /// <summary>The reference: per block an exact integer dot, then the canonical float steps.</summary>
    public static float DotScalar(QuantFormat format, byte* w, ushort* scales, sbyte* xq, float* dx, long supers)
    {
        Span<float> acc = stackalloc float[SuperBlocks];
        for (long s = 0; s < supers; s++)
        {
            for (var i = 0; i < SuperBlocks; i++)
            {
                var sum = 0;
                for (var k = 0; k < BlockWeights; k++)
                {
                    long at = s * SuperWeights + i * BlockWeights + k;
                    sum += QuantBlocks.Level(format, w, at) * xq[Q8Byte(at)];
                }
                var b = s * SuperBlocks + i;
                acc[i] = MathF.FusedMultiplyAdd(sum, GemvMath.Bf16ToFloat(scales[b]) * dx[b], acc[i]);
            }
        }
        Span<float> t = stackalloc float[8];
        for (var i = 0; i < 8; i++) t[i] = acc[i] + acc[i + 8];
        return Reduce(Vector256.Create(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7]));
    }

    /// <summary>The canonical sum of eight lanes (lanes <c>i</c> and <c>i + 8</c> of the 16 already added): (i + i+4), then (0+2)+(1+3).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static float Reduce(Vector256<float> t8)
    {
        var t4 = t8.GetLower() + t8.GetUpper();
        return (t4.GetElement(0) + t4.GetElement(2)) + (t4.GetElement(1) + t4.GetElement(3));
    }

    /// <summary>Sixteen bf16 scales times sixteen activation scales, as two halves (blocks 0-7, 8-15).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static (Vector256<float> A, Vector256<float> B) Scales(ushort* scales, float* dx)
    {
        var a = Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(scales), 16).AsSingle();
        var b = Avx2.ShiftLeftLogical(Avx2.ConvertToVector256Int32(scales + 8), 16).AsSingle();
        return (a * Vector256.Load(dx), b * Vector256.Load(dx + 8));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q8Vnni(byte* w, ushort* scales, sbyte* xq, float* dx, int* offsets, long supers)
    {
        Vector256<float> fa = default, fb = default;
        for (long s = 0; s < supers; s++)
        {
            var ia = Vector256.Load(offsets + s * 16);
            var ib = Vector256.Load(offsets + s * 16 + 8);
            byte* ws = w + s * SuperWeights;
            sbyte* xs = xq + s * SuperWeights;
            for (var j = 0; j < 8; j++)
            {
                ia = AvxVnni.MultiplyWideningAndAdd(ia, Vector256.Load(ws + 64 * j), Vector256.Load(xs + 64 * j));
                ib = AvxVnni.MultiplyWideningAndAdd(ib, Vector256.Load(ws + 64 * j + 32), Vector256.Load(xs + 64 * j + 32));
            }
            var (sa, sb) = Scales(scales + s * 16, dx + s * 16);
            fa = Fma.MultiplyAdd(Avx.ConvertToVector256Single(ia), sa, fa);
            fb = Fma.MultiplyAdd(Avx.ConvertToVector256Single(ib), sb, fb);
        }
        return Reduce(fa + fb);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4Vnni(byte* w, ushort* scales, sbyte* xq, float* dx, int* offsets, long supers)
    {
        Vector256<float> fa = default, fb = default;
        var low = Vector256.Create((byte)0x0F);
        var high = Vector256.Create((byte)0xF0);
        for (long s = 0; s < supers; s++)
        {
            var la = Vector256.Load(offsets + s * 16);
            var lb = Vector256.Load(offsets + s * 16 + 8);
            Vector256<int> ha = default, hb = default;
            byte* ws = w + s * (SuperWeights / 2);
            sbyte* xs = xq + s * SuperWeights;
            for (var v = 0; v < 4; v++)
            {
                var a = Vector256.Load(ws + 64 * v);
                var b = Vector256.Load(ws + 64 * v + 32);
                la = AvxVnni.MultiplyWideningAndAdd(la, a & low, Vector256.Load(xs + 64 * v));
                lb = AvxVnni.MultiplyWideningAndAdd(lb, b & low, Vector256.Load(xs + 64 * v + 32));
                ha = AvxVnni.MultiplyWideningAndAdd(ha, a & high, Vector256.Load(xs + 64 * (v + 4)));
                hb = AvxVnni.MultiplyWideningAndAdd(hb, b & high, Vector256.Load(xs + 64 * (v + 4) + 32));
            }
            // The high nibbles were multiplied as 16·q: their sums are exact multiples of 16.
            var ia = la + Avx2.ShiftRightArithmetic(ha, 4);
            var ib = lb + Avx2.ShiftRightArithmetic(hb, 4);
            var (sa, sb) = Scales(scales + s * 16, dx + s * 16);
            fa = Fma.MultiplyAdd(Avx.ConvertToVector256Single(ia), sa, fa);
            fb = Fma.MultiplyAdd(Avx.ConvertToVector256Single(ib), sb, fb);
        }
        return Reduce(fa + fb);
    }

    /// <summary>32 signed weights × 32 signed activations as 8 dword sums (|w|, |x| ≤ 127: <c>vpmaddubsw</c> cannot saturate).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> SignedDot(Vector256<sbyte> w, Vector256<sbyte> x)
        => Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(Avx2.Abs(x), Avx2.Sign(w, x)), Vector256.Create((short)1));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q8Avx2(byte* w, ushort* scales, sbyte* xq, float* dx, long supers)
    {
        Vector256<float> fa = default, fb = default;
        var bias = Vector256.Create((byte)0x80);
        for (long s = 0; s < supers; s++)
        {
            Vector256<int> ia = default, ib = default;
            byte* ws = w + s * SuperWeights;
            sbyte* xs = xq + s * SuperWeights;
            for (var j = 0; j < 8; j++)
            {
                ia += SignedDot((Vector256.Load(ws + 64 * j) ^ bias).AsSByte(), Vector256.Load(xs + 64 * j));
                ib += SignedDot((Vector256.Load(ws + 64 * j + 32) ^ bias).AsSByte(), Vector256.Load(xs + 64 * j + 32));
            }
            var (sa, sb) = Scales(scales + s * 16, dx + s * 16);
            fa = Fma.MultiplyAdd(Avx.ConvertToVector256Single(ia), sa, fa);
            fb = Fma.MultiplyAdd(Avx.ConvertToVector256Single(ib), sb, fb);
        }
        return Reduce(fa + fb);
    }

    /// <summary>
    /// <see cref="Q8Avx2"/> on 512-bit vectors: one 64-byte load covers all sixteen blocks of a superblock. AVX-512 has
    /// no <c>vpsignb</c>, so the weight's sign flip where the activation is negative is a compare and a select.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q8Avx512(byte* w, ushort* scales, sbyte* xq, float* dx, long supers)
    {
        Vector512<float> f = default;
        var bias = Vector512.Create((byte)0x80);
        var ones = Vector512.Create((short)1);
        for (long s = 0; s < supers; s++)
        {
            Vector512<int> sums = default;
            byte* ws = w + s * SuperWeights;
            sbyte* xs = xq + s * SuperWeights;
            for (var j = 0; j < 8; j++)
            {
                var q = (Vector512.Load(ws + 64 * j) ^ bias).AsSByte();
                var x = Vector512.Load(xs + 64 * j);
                var signed = Vector512.ConditionalSelect(Vector512.LessThan(x, Vector512<sbyte>.Zero), -q, q);
                sums += Avx512BW.MultiplyAddAdjacent(Avx512BW.MultiplyAddAdjacent(Avx512BW.Abs(x), signed), ones);
            }
            var (sa, sb) = Scales(scales + s * 16, dx + s * 16);
            f = Avx512F.FusedMultiplyAdd(Avx512F.ConvertToVector512Single(sums), Vector512.Create(sa, sb), f);
        }
        return Reduce(f.GetLower() + f.GetUpper());
    }

    /// <summary>32 nibbles (0..15) × 32 signed activations as 8 dword sums (at most 2·15·127 per pair: no saturation).</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<int> NibbleDot(Vector256<byte> w, Vector256<sbyte> x)
        => Avx2.MultiplyAddAdjacent(Avx2.MultiplyAddAdjacent(w, x), Vector256.Create((short)1));

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static float Q4Avx2(byte* w, ushort* scales, sbyte* xq, float* dx, int* offsets, long supers)
    {
        Vector256<float> fa = default, fb = default;
        var low = Vector256.Create((byte)0x0F);
        for (long s = 0; s < supers; s++)
        {
            var ia = Vector256.Load(offsets + s * 16);
            var ib = Vector256.Load(offsets + s * 16 + 8);
            byte* ws = w + s * (SuperWeights / 2);
            sbyte* xs = xq + s * SuperWeights;
            for (var v = 0; v < 4; v++)
            {
                var a = Vector256.Load(ws + 64 * v);
                var b = Vector256.Load(ws + 64 * v + 32);
                ia += NibbleDot(a & low, Vector256.Load(xs + 64 * v)) + NibbleDot(Avx2.ShiftRightLogical(a.AsUInt16(), 4).AsByte() & low, Vector256.Load(xs + 64 * (v + 4)));
                ib += NibbleDot(b & low, Vector256.Load(xs + 64 * v + 32)) + NibbleDot(Avx2.ShiftRightLogical(b.AsUInt16(), 4).AsByte() & low, Vector256.Load(xs + 64 * (v + 4) + 32));
            }
            var (sa, sb) = Scales(scales + s * 16, dx + s * 16);
            fa = Fma.MultiplyAdd(Avx.ConvertToVector256Single(ia), sa, fa);
            fb = Fma.MultiplyAdd(Avx.ConvertToVector256Single(ib), sb, fb);
        }
        return Reduce(fa + fb);
    }
}
