using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Runtime;

/// <summary>
/// Float16 weights kept as stored (the language model's <c>QuantFormat.F16</c>, the vision tower's linear layers) rounded to bf16 for a product: the
/// native <c>vcvtph2ps</c> path when it is there, else <see cref="FloatConversion"/>'s (the same bits, as the load-time
/// conversion gives them).
/// </summary>
internal static unsafe class HalfRounding
{
    /// <summary>
    /// <paramref name="n"/> values from <paramref name="src"/> into <paramref name="dst"/> on the calling thread;
    /// <paramref name="bypassCaches"/> for a large destination read only later (see <see cref="NativeKernels.HalfToBf16"/>).
    /// </summary>
    public static void Round(ushort* src, ushort* dst, long n, bool bypassCaches = false)
    {
        if (NativeKernels.HasHalfToBf16) NativeKernels.HalfToBf16(src, dst, n, bypassCaches);
        else FloatConversion.ConvertOnThisThread((nint)src, ScalarType.Float16, (nint)dst, ScalarType.BFloat16, n);
    }

    /// <summary>
    /// A contiguous float16 CPU tensor into a contiguous bf16 one of as many elements, on libtorch's thread count, in
    /// chunks of whole 64-byte lines; a destination larger than <see cref="BypassCachesBytes"/> is written past the
    /// caches (a whole matrix for a product, read back by the product after the last chunk).
    /// </summary>
    public static void Round(Tensor half, Tensor bf16)
    {
        if (half.dtype != ScalarType.Float16 || bf16.dtype != ScalarType.BFloat16 || !half.is_contiguous() || !bf16.is_contiguous()
            || half.NumberOfElements != bf16.NumberOfElements || half.device_type != DeviceType.CPU || bf16.device_type != DeviceType.CPU)
            throw new ArgumentException("Expected contiguous CPU float16 and bf16 tensors of as many elements.");
        var n = half.NumberOfElements;
        var chunks = (int)Math.Min(WorkerPool.MaxChunks, Math.Max(1, n / ChunkElements));
        var per = ((n + chunks - 1) / chunks + 31) / 32 * 32; // whole lines: a chunk starts where the destination is aligned
        chunks = (int)((n + per - 1) / per);
        WorkerPool.Shared.Run(new Work((ushort*)TensorMath.Address(half), (ushort*)TensorMath.Address(bf16), n, per, n * 2 > BypassCachesBytes),
            chunks, Math.Max(1, get_num_threads()));
    }

    /// <summary>A new bf16 tensor holding <paramref name="half"/> rounded.</summary>
    public static Tensor Rounded(Tensor half)
    {
        var bf16 = empty(half.shape, ScalarType.BFloat16);
        Round(half, bf16);
        return bf16;
    }

    private const long ChunkElements = 1L << 18;

    /// <summary>
    /// Destination bytes above which <see cref="Round(Tensor, Tensor)"/> bypasses the caches: 8 MiB, beyond what a
    /// core's share of the last-level cache keeps until the product reads it back.
    /// </summary>
    public const long BypassCachesBytes = 8L << 20;

    private sealed class Work(ushort* src, ushort* dst, long n, long per, bool bypassCaches) : PoolWork
    {
        public override void Run(int chunk)
        {
            var start = chunk * per;
            if (start < n) Round(src + start, dst + start, Math.Min(per, n - start), bypassCaches);
        }
    }
}
