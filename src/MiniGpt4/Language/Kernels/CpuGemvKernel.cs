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

    /// <summary>Weight bytes below which a call runs on the calling thread only (waking workers costs more).</summary>
    public const long ParallelThresholdBytes = 1L << 20;

    /// <summary>Weight bytes per work item handed to a thread (≈ 256 KiB: fine-grained enough to rebalance when a core is busy).</summary>
    public const long ChunkBytes = 256L << 10;

    /// <param name="maxRows">Most activation rows handled here; more go to libtorch (a GEMM is faster there).</param>
    /// <param name="threads">Threads per product; <c>null</c> follows <c>torch.get_num_threads()</c> at each call.</param>
    /// <param name="scheduler">Runs <c>chunks</c> work items on up to <c>threads</c> threads; <c>null</c>: <see cref="Parallel.For(int, int, ParallelOptions, Action{int})"/> (benchmarks compare others).</param>
    public CpuGemvKernel(int maxRows = DefaultMaxRows, int? threads = null, Action<int, int, Action<int>>? scheduler = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxRows, 1);
        if (threads is < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "threads must be at least 1.");
        MaxRows = maxRows;
        Threads = threads;
        _scheduler = scheduler ?? ParallelFor;
    }

    private readonly Action<int, int, Action<int>> _scheduler;

    private static void ParallelFor(int chunks, int threads, Action<int> body)
        => Parallel.For(0, chunks, new ParallelOptions { MaxDegreeOfParallelism = threads }, body);

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
        try
        {
            var threads = Math.Max(1, Threads ?? get_num_threads());
            var weightBytes = outFeatures * n * weight.ElementSize;
            if (weight.dtype == ScalarType.Float32)
                Run(new Job(Address(weight), Address(xc ?? x), Address(y), n, outFeatures, rows, Bf16: false), weightBytes, threads);
            else
            {
                var packed = (float*)NativeMemory.AlignedAlloc((nuint)(rows * n * sizeof(float)), 64);
                try
                {
                    var xs = (ushort*)Address(xc ?? x);
                    for (var m = 0; m < rows; m++) GemvMath.PackBf16(xs + m * n, packed + m * n, n);
                    Run(new Job(Address(weight), (nint)packed, Address(y), n, outFeatures, rows, Bf16: true), weightBytes, threads);
                }
                finally { NativeMemory.AlignedFree(packed); }
            }
        }
        finally { xc?.Dispose(); }
        return y;
    }

    /// <summary>
    /// The address of a contiguous CPU tensor's first element: TorchSharp's <c>bytes</c> spans the
    /// native memory (storage offset included) but its length is an <c>int</c>, so it is taken from a
    /// one-element view, which works for weights over 2 GiB too.
    /// </summary>
    private static nint Address(Tensor t)
    {
        using var flat = t.view(-1);
        using var first = flat.narrow(0, 0, 1);
        return (nint)Unsafe.AsPointer(ref MemoryMarshal.GetReference(first.bytes));
    }

    private void Run(Job job, long weightBytes, int threads)
    {
        if (threads == 1 || weightBytes < ParallelThresholdBytes)
        {
            job.Rows(0, job.OutFeatures);
            return;
        }
        // Chunks of whole 4-row groups, handed out dynamically, so a core slowed by another process simply takes fewer.
        var rowBytes = weightBytes / job.OutFeatures;
        var rowsPerChunk = Math.Max(4, ChunkBytes / rowBytes / 4 * 4);
        var chunks = (int)((job.OutFeatures + rowsPerChunk - 1) / rowsPerChunk);
        _scheduler(chunks, threads, c => job.Rows(c * rowsPerChunk, Math.Min(job.OutFeatures, (c + 1) * rowsPerChunk)));
    }

    /// <summary>One product: addresses stay valid for the call (the caller holds the tensors).</summary>
    private readonly record struct Job(nint W, nint X, nint Y, long N, long OutFeatures, int ActivationRows, bool Bf16)
    {
        public void Rows(long start, long end)
        {
            if (Bf16) GemvMath.RowsBf16((ushort*)W, (float*)X, (ushort*)Y, N, OutFeatures, ActivationRows, start, end);
            else GemvMath.RowsF32((float*)W, (float*)X, (float*)Y, N, OutFeatures, ActivationRows, start, end);
        }
    }
}
