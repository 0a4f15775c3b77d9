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
