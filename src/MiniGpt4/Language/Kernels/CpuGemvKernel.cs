using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language.Kernels;

/// <summary>
/// Decode-time projections on the CPU: <c>y = x · Wᵀ</c> for a few activation rows (one token per
/// sequence) as .NET SIMD dot products straight over the weight's memory, float32 accumulation,
/// output rows split across threads. The weight is read exactly once per call, so the product is
/// bound by memory bandwidth; libtorch's bf16 matrix-vector product is slower (docs/language-model.md).
/// </summary>
/// <remarks>
/// Handled: CPU tensors, a contiguous <c>[out, in]</c> weight of float32 or bfloat16, activations of the same dtype
/// with at most <see cref="MaxRows"/> rows (all dimensions but the last), no autograd. Everything else (prefill, CUDA,
/// other dtypes, non-contiguous weights, a machine without AVX2+FMA) goes to libtorch's <c>linear</c>. The result is
/// allocated by torch and written in place, in the activation dtype (bf16 rounded to nearest-even from the float32
/// sums, as libtorch rounds). The instance holds no mutable state, so concurrent calls are safe.
/// </remarks>
internal sealed unsafe class CpuGemvKernel : ILinearKernel
{
    public const int DefaultMaxRows = 8;

    /// <param name="maxRows">Most activation rows handled here; more go to libtorch (a GEMM is faster there).</param>
    /// <param name="threads">Threads per product; <c>null</c> follows <c>torch.get_num_threads()</c> at each call.</param>
    public CpuGemvKernel(int maxRows = DefaultMaxRows, int? threads = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRows, 1);
        if (threads is < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "threads must be at least 1.");
        MaxRows = maxRows;
        Threads = threads;
    }

    /// <summary>True when this machine has the SIMD the kernel needs (AVX-512F, or AVX2 with FMA).</summary>
    public static bool IsSupported => GemvMath.Lanes != 0;

    /// <summary>Most activation rows (product of all dimensions but the last) handled by this kernel.</summary>
    public int MaxRows { get; }

    /// <summary>Threads per product, or <c>null</c> to follow libtorch's thread count.</summary>
    public int? Threads { get; }

    /// <summary>True when <see cref="Forward"/> computes this product itself rather than calling libtorch.</summary>
    public bool Handles(Tensor x, Tensor weight)
    {
        if (!IsSupported) return false;
        if (x.device_type != DeviceType.CPU || weight.device_type != DeviceType.CPU) return false;
        if (weight.dtype is not (ScalarType.Float32 or ScalarType.BFloat16) || x.dtype != weight.dtype) return false;
        if (weight.dim() != 2 || x.dim() < 1 || !weight.is_contiguous()) return false;
        var n = weight.shape[1];
        if (n == 0 || weight.shape[0] == 0 || x.shape[^1] != n) return false;
        var rows = x.numel() / n;
        if (rows < 1 || rows > MaxRows) return false;
        // Autograd would need libtorch's graph.
        return !(is_grad_enabled() && (x.requires_grad || weight.requires_grad));
    }

    /// <inheritdoc />
    public Tensor Forward(Tensor x, Tensor weight)
    {
        if (!Handles(x, weight)) return nn.functional.linear(x, weight);
        var n = weight.shape[1];
        var outFeatures = weight.shape[0];
        var rows = (int)(x.numel() / n);
        var shape = x.shape.ToArray();
        shape[^1] = outFeatures;
        var y = empty(shape, x.dtype, CPU);
        var xc = x.is_contiguous() ? null : x.contiguous();
        var bf16 = weight.dtype == ScalarType.BFloat16;
        // bf16: float32 sums, rounded to bf16 at the end.
        var sums = bf16 ? (float*)NativeMemory.AlignedAlloc((nuint)(rows * outFeatures * sizeof(float)), 64) : null;
        try
        {
            using var work = new GemvWork();
            work.Begin(Address(xc ?? x), n, rows, bf16)
                .Add(Address(weight), bf16 ? (nint)sums : Address(y), outFeatures)
                .Run(Math.Max(1, Threads ?? get_num_threads()));
            if (bf16) GemvMath.ToBf16(sums, (ushort*)Address(y), rows * outFeatures);
        }
        finally
        {
            xc?.Dispose();
            NativeMemory.AlignedFree(sums);
        }
        return y;
    }

    private static nint Address(Tensor t) => Runtime.TensorMath.Address(t);
}
