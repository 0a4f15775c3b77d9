using MiniGpt4.Runtime;
using System.Runtime.InteropServices;
using MiniGpt4.Language.Kernels;
using Xunit;

namespace MiniGpt4.Tests.Language.Kernels;

/// <summary>
/// The decode products (<see cref="GemvMath"/> through <see cref="GemvWork"/>) against a float64 scalar reference on odd
/// sizes and unaligned rows, and bit-identical for every activation row whatever the batch size (1–8) and thread count.
/// </summary>
public sealed unsafe class GemvMathTests
{
    // Sizes around every vector and unroll boundary (16/32/64/128 elements), and a few large ones.
    // 4099 and 4257 are wide rows (GemvMath.WideRowElements), computed four at a time in bf16.
    private static readonly int[] Widths = [1, 7, 15, 16, 17, 31, 33, 63, 65, 127, 128, 129, 255, 1000, 4099, 4257];

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void Products_match_a_float64_reference_on_odd_sizes_and_offsets(bool bf16)
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        var rnd = new Random(3);
        foreach (var n in Widths)
        foreach (var offset in new[] { 0, 1, 3 }) // elements: rows that start off any vector alignment
        {
            const int outFeatures = 37, rows = 3;
            using var w = new Buffer(offset + outFeatures * n, bf16, rnd);
            using var x = new Buffer(offset + rows * n, bf16, rnd);
            var y = new float[rows * outFeatures];
            fixed (float* yp = y)
                new GemvWork().Begin(x.At(offset), n, rows, bf16).Add(w.At(offset), (nint)yp, outFeatures).Run(1);
            for (var m = 0; m < rows; m++)
            for (var r = 0; r < outFeatures; r++)
            {
                double exact = 0, magnitude = 0;
                for (var k = 0; k < n; k++)
                {
                    var p = w.Value(offset + r * n + k) * x.Value(offset + m * n + k);
                    exact += p;
                    magnitude += Math.Abs(p);
                }
                // Float32 accumulation of n exact products: each sum rounds once, so the error is at most n ulps of the magnitude.
                var bound = (n + 2) * magnitude * Math.Pow(2, -24) + 1e-30;
                Assert.True(Math.Abs(y[m * outFeatures + r] - exact) <= bound, $"n={n} offset={offset} bf16={bf16} [{m},{r}]: {y[m * outFeatures + r]} vs {exact}");
            }
        }
    }

    [SkippableTheory]
    [InlineData(false, 1531, 1000)]
    [InlineData(true, 1531, 1000)]
    [InlineData(true, 4133, 603)] // wide rows: four at a time, chunks of 253 rows end inside a group of four
    public void Each_activation_row_is_bit_identical_at_every_batch_size_and_thread_count(bool bf16, int n, int outFeatures)
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        var rnd = new Random(4);
        // Several MB of weights: above the parallel threshold, more than one 2 MiB chunk, rows not a multiple of anything.
        const int maxRows = 8;
        using var w = new Buffer(outFeatures * n, bf16, rnd);
        using var x = new Buffer(maxRows * n, bf16, rnd);
        var alone = new float[maxRows][];
        for (var m = 0; m < maxRows; m++)
        {
            alone[m] = new float[outFeatures];
            fixed (float* yp = alone[m])
                new GemvWork().Begin(x.At(m * n), n, 1, bf16).Add(w.At(0), (nint)yp, outFeatures).Run(1);
        }
        foreach (var threads in new[] { 1, 2 })
        for (var rows = 1; rows <= maxRows; rows++)
        {
            var y = new float[rows * outFeatures];
            fixed (float* yp = y)
                new GemvWork().Begin(x.At(0), n, rows, bf16).Add(w.At(0), (nint)yp, outFeatures).Run(threads);
            for (var m = 0; m < rows; m++)
                Assert.True(y.AsSpan(m * outFeatures, outFeatures).SequenceEqual(alone[m]), $"row {m} of {rows} at {threads} threads (bf16={bf16})");
        }
    }

    [SkippableFact]
    public void Wide_rows_and_tiles_of_several_activation_rows_equal_the_one_row_dot_bit_for_bit()
    {
        Skip.IfNot(GemvMath.Lanes == 16, "the four-row products and tiles are the AVX-512 path");
        var rnd = new Random(5);
        foreach (var n in new[] { 31, 100, 4096, 4097, 4127, 4257, 11008 })
        foreach (var rows in new[] { 1, 2, 3, 4, 5, 8 })
        {
            const int outFeatures = 9;
            using var w = new Buffer(outFeatures * n, bf16: true, rnd);
            using var x = new Buffer(rows * n, bf16: true, rnd);
            var y = new float[rows * outFeatures];
            fixed (float* yp = y)
                new GemvWork().Begin(x.At(0), n, rows, bf16: true).Add(w.At(0), (nint)yp, outFeatures).Run(1);
            for (var m = 0; m < rows; m++)
            for (var r = 0; r < outFeatures; r++)
            {
                var one = GemvMath.DotBf16((ushort*)w.At(r * n), (ushort*)x.At(m * n), n);
                Assert.True(BitConverter.SingleToUInt32Bits(one) == BitConverter.SingleToUInt32Bits(y[m * outFeatures + r]),
                    $"n={n} rows={rows} [{m},{r}]: {y[m * outFeatures + r]} vs {one}");
            }
        }
    }

    [SkippableFact]
    public void The_bf16_dot_is_its_documented_order_of_rounded_adds()
    {
        Skip.IfNot(GemvMath.Lanes == 16, "the documented order is the AVX-512 path's");
        var rnd = new Random(12);
        foreach (var n in new[] { 1, 31, 32, 33, 64, 95, 96, 100, 4096, 4127 })
        {
            using var w = new Buffer(n, bf16: true, rnd);
            using var x = new Buffer(n, bf16: true, rnd);
            var expected = CanonicalBf16Dot(w, x, n);
            var actual = GemvMath.DotBf16((ushort*)w.At(0), (ushort*)x.At(0), n);
            Assert.True(BitConverter.SingleToUInt32Bits(expected) == BitConverter.SingleToUInt32Bits(actual), $"n={n}: {actual} vs {expected}");
        }
    }

    [SkippableFact]
    public void The_native_bf16_products_equal_the_managed_ones_bit_for_bit()
    {
        Skip.IfNot(GemvMath.Lanes == 16 && NativeKernels.HasBf16Dot, "no AVX512-BF16 (vdpbf16ps) or no native library here");
        var rnd = new Random(13);
        foreach (var n in new[] { 31, 32, 100, 4096, 4097, 4127, 4257, 11008 })
        foreach (var rows in new[] { 1, 2, 3, 4, 5, 6, 7, 8, 9, 16, 17 }) // past 8: tiles of eight rows, then the rest
        {
            const int outFeatures = 11; // tiles of three weight rows (and of four for one row) with rows left over
            using var w = new Buffer(outFeatures * n + 1, bf16: true, rnd);
            using var x = new Buffer(rows * n + 1, bf16: true, rnd);
            foreach (var offset in new[] { 0, 1 })
            {
                var native = new float[rows * outFeatures];
                var managed = new float[rows * outFeatures];
                fixed (float* yn = native)
                fixed (float* ym = managed)
                {
                    GemvMath.RowsBf16((ushort*)w.At(offset), (ushort*)x.At(offset), yn, n, outFeatures, rows, 0, outFeatures, native: true);
                    GemvMath.RowsBf16((ushort*)w.At(offset), (ushort*)x.At(offset), ym, n, outFeatures, rows, 0, outFeatures, native: false);
                }
                for (var i = 0; i < native.Length; i++)
                    Assert.True(BitConverter.SingleToUInt32Bits(native[i]) == BitConverter.SingleToUInt32Bits(managed[i]),
                        $"n={n} rows={rows} offset={offset} element {i}: native {native[i]}, managed {managed[i]}");
            }
        }
    }

    /// <summary>
    /// The canonical bf16 dot written out one value at a time (what <c>vdpbf16ps</c> does per lane): lane i of group g
    /// adds w·x of element 32g+2i+1, then of 32g+2i, to accumulator a (g even) or b (g odd), each add rounded; then
    /// the 16 lanes of a + b are summed as (i + i+8), (i + i+4), (0+2) + (1+3), and the rest added one by one.
    /// </summary>
    private static float CanonicalBf16Dot(Buffer w, Buffer x, int n)
    {
        var a = new float[16];
        var b = new float[16];
        var groups = n / 32;
        for (var g = 0; g < groups; g++)
        {
            var acc = g % 2 == 0 ? a : b;
            for (var i = 0; i < 16; i++)
            {
                int odd = 32 * g + 2 * i + 1, even = 32 * g + 2 * i;
                acc[i] = MathF.FusedMultiplyAdd((float)w.Value(odd), (float)x.Value(odd), acc[i]);
                acc[i] = MathF.FusedMultiplyAdd((float)w.Value(even), (float)x.Value(even), acc[i]);
            }
        }
        var s = new float[16];
        for (var i = 0; i < 16; i++) s[i] = a[i] + b[i];
        var t8 = new float[8];
        for (var i = 0; i < 8; i++) t8[i] = s[i] + s[i + 8];
        var t4 = new float[4];
        for (var i = 0; i < 4; i++) t4[i] = t8[i] + t8[i + 4];
        var sum = (t4[0] + t4[2]) + (t4[1] + t4[3]);
        for (var k = 32 * groups; k < n; k++) sum = MathF.FusedMultiplyAdd((float)w.Value(k), (float)x.Value(k), sum);
        return sum;
    }

    [Fact]
    public void Vector_bf16_rounding_equals_the_scalar_rule_on_every_kind_of_value()
    {
        var rnd = new Random(8);
        float[] specials = [0f, -0f, 1f, -1f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.MinValue,
            float.Epsilon, -float.Epsilon, 1e-39f, BitConverter.UInt32BitsToSingle(0x3F808000), BitConverter.UInt32BitsToSingle(0x3F818000),
            BitConverter.UInt32BitsToSingle(0x7F7FFFFF), BitConverter.UInt32BitsToSingle(0xFFC12345)];
        var values = specials.Concat(Enumerable.Range(0, 1000).Select(_ => BitConverter.Int32BitsToSingle(rnd.Next()) * (rnd.Next(2) * 2 - 1))).ToArray();
        var rounded = values.ToArray();
        var packed = new ushort[values.Length];
        fixed (float* v = rounded)
        fixed (float* src = values)
        fixed (ushort* dst = packed)
        {
            GemvMath.RoundToBf16(v, values.Length);
            GemvMath.ToBf16(src, dst, values.Length);
        }
        for (var i = 0; i < values.Length; i++)
        {
            Assert.Equal(GemvMath.FloatToBf16(values[i]), packed[i]);
            Assert.Equal(BitConverter.SingleToUInt32Bits(GemvMath.RoundToBf16(values[i])), BitConverter.SingleToUInt32Bits(rounded[i]));
        }
    }

    /// <summary>Native values with a known float64 meaning: bf16 (exact widening) or float32, N(0, 1).</summary>
    private sealed class Buffer : IDisposable
    {
        private readonly bool _bf16;
        private readonly void* _p;

        public Buffer(int count, bool bf16, Random rnd)
        {
            _bf16 = bf16;
            _p = NativeMemory.AlignedAlloc((nuint)(count * (bf16 ? 2 : 4) + 64), 64);
            for (var i = 0; i < count; i++)
            {
                var v = (float)(rnd.NextDouble() * 2 - 1);
                if (bf16) ((ushort*)_p)[i] = GemvMath.FloatToBf16(v);
                else ((float*)_p)[i] = v;
            }
        }

        public nint At(int element) => (nint)((byte*)_p + element * (_bf16 ? 2 : 4));

        public double Value(int element) => _bf16 ? GemvMath.Bf16ToFloat(((ushort*)_p)[element]) : ((float*)_p)[element];

        public void Dispose() => NativeMemory.AlignedFree(_p);
    }
}
