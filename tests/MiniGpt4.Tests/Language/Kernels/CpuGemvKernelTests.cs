using System.Runtime.InteropServices;
using MiniGpt4.Language;
using MiniGpt4.Language.Kernels;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language.Kernels;

/// <summary>
/// <see cref="CpuGemvKernel"/> against float64 references computed from the same (rounded) inputs,
/// and against libtorch's own <c>linear</c>.
/// </summary>
public sealed class CpuGemvKernelTests
{
    private readonly ITestOutputHelper _out;

    public CpuGemvKernelTests(ITestOutputHelper output)
    {
        _out = output;
        set_num_threads(1);
    }

    /// <summary>(in, out) pairs: odd sizes, sizes below / at / just past a vector block, out not a multiple of 4.</summary>
    public static TheoryData<int, int> Shapes => new()
    {
        { 1, 1 }, { 3, 5 }, { 16, 1 }, { 17, 3 }, { 31, 7 }, { 32, 4 }, { 33, 9 }, { 64, 172 }, { 100, 37 }, { 257, 130 }, { 1000, 515 },
    };

    private static (Tensor X, Tensor W) Inputs(int n, int outFeatures, int rows, ScalarType dtype, long seed)
    {
        using var g = new Generator((ulong)seed);
        var x = randn([rows, 1, n], generator: g).to(dtype);
        var w = (randn([outFeatures, n], generator: g) * 0.1).to(dtype);
        return (x, w);
    }

    /// <summary>x·Wᵀ in float64 from the given (already rounded) inputs, and Σ|x||w| per output (the error scale of a float32 sum).</summary>
    private static (Tensor Exact, Tensor AbsSum) Reference(Tensor x, Tensor w)
    {
        var x64 = x.to(ScalarType.Float64);
        var w64 = w.to(ScalarType.Float64);
        return (nn.functional.linear(x64, w64), nn.functional.linear(x64.abs(), w64.abs()));
    }

    [SkippableTheory]
    [MemberData(nameof(Shapes))]
    public void Float32_matches_a_float64_reference_within_the_float32_summation_bound(int n, int outFeatures)
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        foreach (var rows in new[] { 1, 3 })
        {
            var (x, w) = Inputs(n, outFeatures, rows, ScalarType.Float32, 1000 * n + outFeatures + rows);
            var kernel = new CpuGemvKernel();
            Assert.True(kernel.Handles(x, w));
            var y = kernel.Forward(x, w);
            Assert.Equal(ScalarType.Float32, y.dtype);
            Assert.Equal(new long[] { rows, 1, outFeatures }, y.shape);

            var (exact, absSum) = Reference(x, w);
            // Any float32 summation order: |error| <= n·u·Σ|x·w| (u = 2^-24), plus the final rounding.
            var bound = absSum * ((n + 1) * Math.Pow(2, -24));
            var err = (y.to(ScalarType.Float64) - exact).abs();
            Assert.True(err.le(bound).all().item<bool>(), $"rows {rows}: max error {err.max().item<double>()} exceeds the summation bound");

            // And libtorch's float32 linear agrees to ~1e-5 relative to the magnitude of the outputs.
            var torchY = nn.functional.linear(x, w);
            var scale = Math.Max(1.0, torchY.abs().max().item<float>());
            var diff = (y - torchY).abs().max().item<float>();
            Assert.True(diff <= 1e-5 * scale, $"rows {rows}: vs torch {diff} (|y| <= {scale})");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Shapes))]
    public void Bfloat16_is_the_float32_sum_rounded_once_and_at_least_as_accurate_as_torch(int n, int outFeatures)
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        foreach (var rows in new[] { 1, 4 })
        {
            var (x, w) = Inputs(n, outFeatures, rows, ScalarType.BFloat16, 7000 * n + outFeatures + rows);
            var kernel = new CpuGemvKernel();
            Assert.True(kernel.Handles(x, w));
            var y = kernel.Forward(x, w);
            Assert.Equal(ScalarType.BFloat16, y.dtype);
            Assert.Equal(new long[] { rows, 1, outFeatures }, y.shape);

            // Products of two bf16 values are exact in float32; the float32 sum errs by at most
            // n·u·Σ|x·w|; rounding that to bf16 adds at most half a bf16 step of the result.
            var (exact, absSum) = Reference(x, w);
            var y64 = y.to(ScalarType.Float64);
            var err = (y64 - exact).abs();
            var halfStep = HalfBf16Step(y64.abs().maximum(exact.abs()));
            var bound = halfStep + absSum * ((n + 1) * Math.Pow(2, -24));
            Assert.True(err.le(bound).all().item<bool>(), $"rows {rows}: max error {err.max().item<double>()} exceeds half a bf16 step plus the float32 summation bound");

            var torchErr = (nn.functional.linear(x, w).to(ScalarType.Float64) - exact).abs();
            var (ours, theirs) = (err.sum().item<double>(), torchErr.sum().item<double>());
            var (oursMax, theirsMax) = (err.max().item<double>(), torchErr.max().item<double>());
            _out.WriteLine($"in {n} out {outFeatures} rows {rows}: total |error| ours {ours:G4} torch {theirs:G4}; max ours {oursMax:G4} torch {theirsMax:G4}");
            // At least as accurate as libtorch's bf16 linear, in total and in the worst element (1 % slack
            // for the rare output that sits on a rounding boundary where both are equally right).
            Assert.True(ours <= theirs * 1.01 + 1e-12, $"rows {rows}: total error {ours} vs torch {theirs}");
            Assert.True(oursMax <= theirsMax * 1.01 + 1e-12, $"rows {rows}: max error {oursMax} vs torch {theirsMax}");
        }
    }

    private static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();

    /// <summary>Half the spacing of bf16 numbers at magnitude <paramref name="a"/> (8 significant bits): 2^(floor(log2 a) − 8).</summary>
    private static Tensor HalfBf16Step(Tensor a)
    {
        var tiny = Math.Pow(2, -133); // half of the smallest bf16 subnormal step
        return (a.clamp_min(Math.Pow(2, -126)).log2().floor() - 8).exp2().clamp_min(tiny);
    }

    [Fact]
    public void Float32_to_bfloat16_rounding_is_libtorchs()
    {
        using var scope = NewDisposeScope();
        // Ties (odd and even mantissa), values just around them, the largest finite numbers, overflow
        // to infinity, subnormals, signed zeros, infinities and NaN, plus random bit patterns.
        var special = new uint[]
        {
            0x3F808000, 0x3F818000, 0x3F808001, 0x3F807FFF, 0x7F7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x00008000, 0x00018000,
            0x00000001, 0x80000000, 0x00000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001, 0xBF808000,
        };
        var rng = new Random(5);
        var bits = special.Concat(Enumerable.Range(0, 10000).Select(_ => (uint)rng.NextInt64(0, 1L << 32))).ToArray();
        var floats = bits.Select(BitConverter.UInt32BitsToSingle).ToArray();
        var expected = MemoryMarshal.Cast<byte, ushort>(tensor(floats).to(ScalarType.BFloat16).bytes).ToArray();
        for (var i = 0; i < floats.Length; i++)
        {
            var ours = GemvMath.FloatToBf16(floats[i]);
            if (float.IsNaN(floats[i])) Assert.True((ours & 0x7F80) == 0x7F80 && (ours & 0x7F) != 0, $"NaN {bits[i]:X8} -> {ours:X4}");
            else Assert.True(expected[i] == ours, $"{bits[i]:X8}: torch {expected[i]:X4}, ours {ours:X4}");
        }
    }

    [SkippableFact]
    public void Shapes_one_dimensional_and_many_leading_dimensions()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        var kernel = new CpuGemvKernel();
        var w = randn(6, 10);
        var x1 = randn(10);
        var y1 = kernel.Forward(x1, w);
        Assert.Equal(new long[] { 6 }, y1.shape);
        Assert.True(y1.allclose(nn.functional.linear(x1, w), 1e-5, 1e-6));
        var x4 = randn(2, 1, 2, 10); // 4 rows
        var y4 = kernel.Forward(x4, w);
        Assert.Equal(new long[] { 2, 1, 2, 6 }, y4.shape);
        Assert.True(y4.allclose(nn.functional.linear(x4, w), 1e-5, 1e-6));
    }

    [SkippableFact]
    public void Non_contiguous_activations_and_offset_views_are_handled()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        var w = randn(9, 40);
        var x = randn(40, 2).t()[0].unsqueeze(0); // stride 2
        Assert.False(x.is_contiguous());
        var kernel = new CpuGemvKernel();
        Assert.True(kernel.Handles(x, w));
        Assert.True(kernel.Forward(x, w).allclose(nn.functional.linear(x, w), 1e-5, 1e-6));

        // Contiguous views that start inside their storage (weight rows 3..11, activation row 2).
        var wView = randn(15, 40).narrow(0, 3, 9);
        var xView = randn(4, 40)[2].unsqueeze(0);
        Assert.True(wView.storage_offset() > 0 && xView.storage_offset() > 0);
        Assert.True(kernel.Handles(xView, wView));
        Assert.True(kernel.Forward(xView, wView).allclose(nn.functional.linear(xView, wView), 1e-5, 1e-6));
    }

    [SkippableFact]
    public void Everything_else_falls_back_to_libtorch_bit_for_bit()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        var kernel = new CpuGemvKernel(maxRows: 4);
        var w = randn(12, 20);
        var cases = new (string Name, Tensor X, Tensor W)[]
        {
            ("prefill rows > MaxRows", randn(1, 5, 20), w),
            ("non-contiguous weight", randn(1, 1, 20), randn(20, 12).t()),
            ("float16", randn(1, 1, 20).to(ScalarType.Float16), w.to(ScalarType.Float16)),
            ("float64", randn(1, 1, 20, dtype: ScalarType.Float64), w.to(ScalarType.Float64)),
            ("no rows", randn(0, 1, 20), w),
            ("1-D weight", randn(20), randn(20)),
        };
        using (var guard = inference_mode())
        {
            foreach (var (name, x, weight) in cases)
            {
                Assert.False(kernel.Handles(x, weight), name);
                Assert.True(Same(kernel.Forward(x, weight), nn.functional.linear(x, weight)), name);
            }
            Assert.False(kernel.Handles(randn(1, 1, 20).to(ScalarType.BFloat16), w), "mixed dtypes");
        }

        // With autograd on and a weight that requires grad, the product must stay differentiable.
        var p = randn(12, 20).requires_grad_(true);
        var xg = randn(1, 1, 20);
        Assert.False(kernel.Handles(xg, p));
        var yg = kernel.Forward(xg, p);
        Assert.True(yg.requires_grad);
        yg.sum().backward();
        Assert.NotNull(p.grad);
        using (var guard = inference_mode()) Assert.True(kernel.Handles(xg, p));
    }

    [SkippableFact]
    public void Threaded_and_single_threaded_results_are_identical()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            // 1027 rows × 1000 columns: above the parallel threshold, rows not a multiple of the chunk.
            var (x, w) = Inputs(1000, 1027, 2, dtype, 11);
            Assert.True(w.NumberOfElements * w.ElementSize >= GemvWork.ParallelThresholdBytes);
            var one = new CpuGemvKernel(threads: 1).Forward(x, w);
            var two = new CpuGemvKernel(threads: 2).Forward(x, w);
            var four = new CpuGemvKernel(threads: 4).Forward(x, w);
            Assert.True(Same(one, two), dtype.ToString());
            Assert.True(Same(one, four), dtype.ToString());
        }
    }

    [SkippableFact]
    public void Concurrent_calls_on_one_instance_do_not_interfere()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        var kernel = new CpuGemvKernel(threads: 2);
        var results = new bool[6];
        Parallel.For(0, results.Length, new ParallelOptions { MaxDegreeOfParallelism = 3 }, i =>
        {
            using var scope = NewDisposeScope();
            using var guard = inference_mode();
            var (x, w) = Inputs(700 + i, 600, 1, i % 2 == 0 ? ScalarType.Float32 : ScalarType.BFloat16, i);
            var expected = new CpuGemvKernel(threads: 1).Forward(x, w);
            var ok = true;
            for (var rep = 0; rep < 5; rep++) ok &= Same(kernel.Forward(x, w), expected);
            results[i] = ok;
        });
        Assert.All(results, Assert.True);
    }

    [SkippableFact]
    public void Non_finite_inputs_propagate_like_torch()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.BFloat16 })
        {
            var w = randn(5, 40).to(dtype);
            var x = randn(1, 40).to(dtype);
            x[0, 3] = tensor(float.PositiveInfinity).to(dtype);
            w[2, 7] = tensor(float.NaN).to(dtype);
            var ours = new CpuGemvKernel().Forward(x, w).to(ScalarType.Float32);
            var theirs = nn.functional.linear(x, w).to(ScalarType.Float32);
            Assert.True(Same(ours.isnan(), theirs.isnan()), dtype.ToString());
            Assert.True(Same(ours.isinf(), theirs.isinf()), dtype.ToString());
        }
    }
}
