using System.Runtime.InteropServices;
using MiniGpt4.Language.Kernels;
using MiniGpt4.Language.Quantization;
using Xunit;

namespace MiniGpt4.Tests.Language.Quantization;

/// <summary>
/// The Q8/Q4 formats (<see cref="QuantBlocks"/>: quantize, dequantize, per-block error bound) and the decode products
/// over them (<see cref="QuantMath"/> through <see cref="GemvWork"/>): every instruction set bit-identical to the scalar
/// reference on odd sizes and unaligned rows, close to a float64 product of the dequantized operands, and each activation
/// row bit-identical whatever the batch size (1–8) and thread count.
/// </summary>
public sealed unsafe class QuantKernelTests
{
    private static readonly int[] Widths = [1, 31, 32, 33, 100, 511, 512, 513, 700, 1100];

    private static QuantFormat Of(int bits) => bits == 8 ? QuantFormat.Q8 : QuantFormat.Q4;

    /// <summary>Weights whose blocks differ in scale by orders of magnitude, with outliers and all-zero blocks.</summary>
    private static float[] Weights(Random rnd, long count)
    {
        var w = new float[count];
        for (long k = 0; k < count; k++)
        {
            var block = k / 32;
            var scale = block % 7 == 3 ? 0f : MathF.Pow(10, (float)(block % 5) - 3);
            w[k] = (float)(rnd.NextDouble() * 2 - 1) * scale * (rnd.Next(50) == 0 ? 20 : 1);
        }
        return w;
    }

    [Theory]
    [InlineData(8)]
    [InlineData(4)]
    public void Round_trip_stays_within_each_blocks_error_bound(int bits)
    {
        var format = Of(bits);
        var rnd = new Random(11);
        foreach (var n in Widths)
        {
            var w = Weights(rnd, n);
            var packed = new byte[QuantLayout.RowBytes(format, n)];
            var scales = new ushort[QuantLayout.BlocksPerRow(n)];
            var back = new float[QuantLayout.PaddedInputs(n)];
            fixed (float* wp = w, bp = back)
            fixed (byte* pp = packed)
            fixed (ushort* sp = scales)
            {
                QuantBlocks.QuantizeRow(format, wp, n, pp, sp);
                QuantBlocks.DequantizeRow(format, pp, sp, back.Length, bp);
            }
            for (var b = 0; b < scales.Length; b++)
            {
                var scale = MathF.Abs(GemvMath.Bf16ToFloat(scales[b]));
                float amax = 0;
                for (var k = b * 32; k < Math.Min(n, b * 32 + 32); k++) amax = MathF.Max(amax, MathF.Abs(w[k]));
                var levels = format == QuantFormat.Q8 ? 127f : 8f;
                // The scale is the block's largest magnitude over the levels, rounded up to bf16 (relative step 2^-8 at most).
                Assert.True(scale >= amax / levels && scale <= amax / levels * (1 + 1f / 128), $"{format} n={n} block {b}: scale {scale}, max |w| {amax}");
                // Q8: half a step; Q4: one step (values beyond +7 steps are clamped).
                var bound = (format == QuantFormat.Q8 ? 0.5 : 1.0) * scale * (1 + 1e-6);
                for (var k = b * 32; k < b * 32 + 32; k++)
                {
                    var original = k < n ? w[k] : 0f;
                    Assert.True(Math.Abs(original - back[k]) <= bound, $"{format} n={n} weight {k}: {original} came back as {back[k]} (bound {bound})");
                }
            }
        }
    }

    [Theory]
    [InlineData(8)]
    [InlineData(4)]
    public void Dequantizing_to_bf16_is_the_per_weight_rule_bit_for_bit(int bits)
    {
        // Random bytes and scales (NaN, infinities, subnormals and zero among them): the vector blocks must give exactly
        // FloatToBf16(level · scale) for every weight, as the scalar rest does.
        var format = Of(bits);
        var rnd = new Random(12);
        ushort[] specials = [0x7FC0, 0x7F80, 0xFF80, 0x0001, 0x8001, 0x0000, 0x8000, 0x7F7F];
        foreach (var n in Widths.Concat([4096, 11008]))
        {
            var packed = new byte[QuantLayout.RowBytes(format, n)];
            rnd.NextBytes(packed);
            var scales = new ushort[QuantLayout.BlocksPerRow(n)];
            for (var b = 0; b < scales.Length; b++)
                scales[b] = b < specials.Length ? specials[b] : GemvMath.FloatToBf16((float)(rnd.NextDouble() * 2 - 1) * 0.01f);
            var back = new ushort[n];
            fixed (byte* pp = packed)
            fixed (ushort* sp = scales, bp = back)
            {
                QuantBlocks.DequantizeRow(format, pp, sp, n, bp);
                for (var k = 0; k < n; k++)
                {
                    var expected = GemvMath.FloatToBf16(QuantBlocks.Level(format, pp, k) * GemvMath.Bf16ToFloat(sp[k / 32]));
                    Assert.True(expected == back[k], $"{format} n={n} weight {k}: {back[k]:X4} vs {expected:X4}");
                }
            }
        }
    }

    [Fact]
    public void A_block_of_zeros_has_scale_zero_and_non_finite_weights_are_refused()
    {
        var w = new float[64];
        var packed = new byte[512];
        var scales = new ushort[16];
        fixed (float* wp = w)
        fixed (byte* pp = packed)
        fixed (ushort* sp = scales)
        {
            QuantBlocks.QuantizeRow(QuantFormat.Q8, wp, 64, pp, sp);
            Assert.All(scales, s => Assert.Equal(0, s));
            Assert.All(packed, p => Assert.Equal(128, p)); // level 0
            w[40] = float.NaN;
            var wAddr = (nint)wp;
            var pAddr = (nint)pp;
            var sAddr = (nint)sp;
            Assert.Throws<ArgumentException>(() => QuantBlocks.QuantizeRow(QuantFormat.Q4, (float*)wAddr, 64, (byte*)pAddr, (ushort*)sAddr));
        }
    }

    [Fact]
    public void Activations_quantize_to_within_half_a_step_of_each_block()
    {
        var rnd = new Random(14);
        foreach (var n in Widths)
        {
            using var x = new Activations(2, n, 1, rnd);
            for (var i = 0; i < 2 * n; i++)
            {
                float amax = 0;
                var block = i % n / 32;
                for (var k = block * 32; k < Math.Min(n, block * 32 + 32); k++) amax = MathF.Max(amax, MathF.Abs(x.Values[i / n * n + k]));
                Assert.True(Math.Abs(x.Values[i] - x.Dequantized[i]) <= amax / 127 * 0.5001, $"n={n} element {i}: {x.Values[i]} vs {x.Dequantized[i]}");
            }
        }
    }

    [Theory]
    [InlineData(8)]
    [InlineData(4)]
    public void Every_instruction_set_matches_the_scalar_reference_bit_for_bit_on_odd_sizes_and_offsets(int bits)
    {
        var format = Of(bits);
        var rnd = new Random(12);
        const int outFeatures = 37, rows = 3;
        foreach (var n in Widths)
        foreach (var offset in new[] { 0, 1, 3 }) // bytes / elements: rows that start off any vector alignment
        {
            using var m = new QuantMatrix(format, outFeatures, n, offset, rnd);
            using var x = new Activations(rows, n, offset, rnd);
            float[] reference = m.Product(x, rows, QuantIsa.Scalar, 1);
            foreach (var isa in new[] { QuantIsa.Avx2, QuantIsa.AvxVnni, QuantIsa.Avx512Bw, QuantIsa.Avx512Vnni })
            {
                if (!QuantMath.IsSupported(isa)) continue;
                var y = m.Product(x, rows, isa, 1);
                for (var i = 0; i < y.Length; i++)
                    Assert.True(BitConverter.SingleToInt32Bits(reference[i]) == BitConverter.SingleToInt32Bits(y[i]),
                        $"{format} {isa} n={n} offset={offset} element {i}: {y[i]} vs scalar {reference[i]}");
            }
            // The reference itself: the float64 product of the dequantized weights and the dequantized activations.
            for (var row = 0; row < rows; row++)
            for (var r = 0; r < outFeatures; r++)
            {
                double exact = 0, magnitude = 0;
                for (var k = 0; k < n; k++)
                {
                    var p = (double)m.Dequantized[r * n + k] * x.Dequantized[row * n + k];
                    exact += p;
                    magnitude += Math.Abs(p);
                }
                var bound = (QuantLayout.PaddedInputs(n) / 512 + 20) * magnitude * Math.Pow(2, -23) + 1e-30;
                var got = reference[row * outFeatures + r];
                Assert.True(Math.Abs(got - exact) <= bound, $"{format} n={n} [{row},{r}]: {got} vs float64 {exact} (bound {bound})");
            }
        }
    }

    [Theory]
    [InlineData(8)]
    [InlineData(4)]
    public void Each_activation_row_is_bit_identical_at_every_batch_size_and_thread_count(int bits)
    {
        var format = Of(bits);
        var rnd = new Random(13);
        // Several 2 MiB chunks (Q8 3 000 × 1 632 bytes per row with scales), rows not a multiple of anything.
        const int n = 1531, outFeatures = 3000, maxRows = 8;
        using var m = new QuantMatrix(format, outFeatures, n, 0, rnd);
        using var x = new Activations(maxRows, n, 0, rnd);
        var alone = new float[maxRows][];
        for (var row = 0; row < maxRows; row++)
        {
            using var single = x.Row(row);
            alone[row] = m.Product(single, 1, QuantMath.Best, 1);
        }
        foreach (var threads in new[] { 1, 2 })
        for (var rows = 1; rows <= maxRows; rows++)
        {
            var y = m.Product(x, rows, QuantMath.Best, threads);
            for (var row = 0; row < rows; row++)
            for (var r = 0; r < outFeatures; r++)
                Assert.True(BitConverter.SingleToInt32Bits(alone[row][r]) == BitConverter.SingleToInt32Bits(y[row * outFeatures + r]),
                    $"{format} rows={rows} threads={threads} [{row},{r}]: {y[row * outFeatures + r]} vs alone {alone[row][r]}");
        }
    }

    /// <summary>A packed matrix in native memory at a chosen byte offset, and its dequantized values.</summary>
    private sealed class QuantMatrix : IDisposable
    {
        private readonly byte* _memory;
        private readonly ushort* _scalesBase, _scales;
        private readonly QuantFormat _format;
        private readonly int _out, _n;

        public QuantMatrix(QuantFormat format, int outFeatures, int n, int offset, Random rnd)
        {
            (_format, _out, _n) = (format, outFeatures, n);
            long rowBytes = QuantLayout.RowBytes(format, n), blocks = QuantLayout.BlocksPerRow(n);
            _memory = (byte*)NativeMemory.Alloc((nuint)(rowBytes * outFeatures + offset));
            _scalesBase = (ushort*)NativeMemory.Alloc((nuint)(blocks * outFeatures * 2 + 2 * offset));
            _scales = _scalesBase + offset;
            Packed = _memory + offset;
            Dequantized = new float[outFeatures * n];
            fixed (float* dp = Dequantized)
                for (var r = 0; r < outFeatures; r++)
                fixed (float* wp = Weights(rnd, n))
                {
                    QuantBlocks.QuantizeRow(format, wp, n, Packed + r * rowBytes, _scales + r * blocks);
                    QuantBlocks.DequantizeRow(format, Packed + r * rowBytes, _scales + r * blocks, n, dp + r * n);
                }
        }

        public byte* Packed { get; }
        public float[] Dequantized { get; }

        public float[] Product(Activations x, int rows, QuantIsa isa, int threads)
        {
            var y = new float[rows * _out];
            using var work = new GemvWork { Isa = isa };
            fixed (float* yp = y)
                work.Begin(x.Address, _n, rows, x.Bf16).Add(new DecodeWeight(_format, (nint)Packed, (nint)_scales), (nint)yp, _out).Run(threads);
            return y;
        }

        public void Dispose()
        {
            NativeMemory.Free(_memory);
            NativeMemory.Free(_scalesBase);
        }
    }

    /// <summary>Float32 activation rows at an element offset, and what their quantization represents.</summary>
    private sealed class Activations : IDisposable
    {
        private readonly float* _memory;
        private readonly int _rows, _n;

        public Activations(int rows, int n, int offset, Random rnd) : this(rows, n, offset)
        {
            for (long i = 0; i < (long)rows * n; i++) Values[i] = (float)(rnd.NextDouble() * 2 - 1) * (i % 97 == 0 ? 30 : 1);
            Quantize();
        }

        private Activations(int rows, int n, int offset)
        {
            (_rows, _n) = (rows, n);
            _memory = (float*)NativeMemory.Alloc((nuint)(((long)rows * n + offset) * 4));
            Values = _memory + offset;
            Dequantized = new float[rows * n];
        }

        public float* Values { get; }
        public nint Address => (nint)Values;
        public bool Bf16 => false;
        public float[] Dequantized { get; }

        public Activations Row(int m)
        {
            var one = new Activations(1, _n, 0);
            Buffer.MemoryCopy(Values + (long)m * _n, one.Values, _n * 4L, _n * 4L);
            one.Quantize();
            return one;
        }

        /// <summary>What the kernels see: <c>q · scale</c> per block (computed by the production quantizer).</summary>
        private void Quantize()
        {
            using var q = new QuantizedActivations();
            q.Ensure(_rows, _n);
            for (var m = 0; m < _rows; m++)
            {
                QuantBlocks.QuantizeActivations(Address + (nint)((long)m * _n * 4), false, _n, q, m);
                for (var k = 0; k < _n; k++) Dequantized[m * _n + k] = q.Values(m)[QuantLayout.Q8Byte(k)] * q.Scales(m)[k / 32];
            }
        }

        public void Dispose() => NativeMemory.Free(_memory);
    }
}
