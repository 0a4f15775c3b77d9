using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using TorchSharp;

namespace MiniGpt4.Runtime;

/// <summary>
/// Vectorised, multi-threaded conversions between the floating dtypes of weight files and of models on the CPU
/// (float16 → bfloat16 and float32, bfloat16 → float32, float32 → bfloat16), with libtorch's exact results: float16
/// and bfloat16 widen exactly (NaNs quiet); narrowing to bfloat16 rounds to nearest-even and turns NaN into 0x7FC0, as
/// <c>c10::BFloat16</c>'s scalar rule does (its vectorised copy writes another NaN, 0xFFFF). libtorch's own <c>copy_</c> between these dtypes runs at about 0.3 GB/s on the machines
/// we measure on; the release's float16 files go into a bfloat16 model through here while loading.
/// </summary>
internal static unsafe class FloatConversion
{
    private const long ChunkElements = 1L << 18;

    /// <summary>True when <see cref="TryConvert"/> handles <paramref name="from"/> → <paramref name="to"/> on this machine.</summary>
    public static bool Handles(torch.ScalarType from, torch.ScalarType to) =>
        Vector256.IsHardwareAccelerated && (from, to) is
            (torch.ScalarType.Float16, torch.ScalarType.BFloat16) or (torch.ScalarType.Float16, torch.ScalarType.Float32) or
            (torch.ScalarType.BFloat16, torch.ScalarType.Float32) or (torch.ScalarType.Float32, torch.ScalarType.BFloat16);

    /// <summary>Converts <paramref name="n"/> contiguous values from <paramref name="src"/> into <paramref name="dst"/>; false when not handled.</summary>
    public static bool TryConvert(nint src, torch.ScalarType from, nint dst, torch.ScalarType to, long n, int threads)
    {
        if (!Handles(from, to)) return false;
        var per = Math.Max(ChunkElements, (n + WorkerPool.MaxChunks - 1) / WorkerPool.MaxChunks);
        WorkerPool.Shared.Run(new Work(src, from, dst, to, n, per), (int)((n + per - 1) / per), threads);
        return true;
    }

    /// <summary>Converts <paramref name="count"/> values on the calling thread (float16 → bfloat16 and the other pairs of <see cref="Handles"/>).</summary>
    public static void ConvertOnThisThread(nint src, torch.ScalarType from, nint dst, torch.ScalarType to, long count) => Convert(src, from, dst, to, 0, count);

    private sealed class Work(nint src, torch.ScalarType from, nint dst, torch.ScalarType to, long n, long per) : PoolWork
    {
        public override void Run(int chunk) => Convert(src, from, dst, to, chunk * per, Math.Min(per, n - chunk * per));
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void Convert(nint src, torch.ScalarType from, nint dst, torch.ScalarType to, long start, long count)
    {
        var i = 0L;
        switch (from, to)
        {
            case (torch.ScalarType.Float16, torch.ScalarType.BFloat16):
            {
                var s = (ushort*)src + start;
                var d = (ushort*)dst + start;
                for (; i + 16 <= count; i += 16)
                {
                    var (lo, hi) = Vector256.Widen(Vector256.Load(s + i));
                    Vector256.Narrow(ToBf16Bits(HalfToSingle(lo)), ToBf16Bits(HalfToSingle(hi))).Store(d + i);
                }
                for (; i < count; i++) d[i] = Bf16Bits((float)BitConverter.UInt16BitsToHalf(s[i]));
                break;
            }
            case (torch.ScalarType.Float16, torch.ScalarType.Float32):
            {
                var s = (ushort*)src + start;
                var d = (float*)dst + start;
                for (; i + 16 <= count; i += 16)
                {
                    var (lo, hi) = Vector256.Widen(Vector256.Load(s + i));
                    HalfToSingle(lo).Store(d + i);
                    HalfToSingle(hi).Store(d + i + 8);
                }
                for (; i < count; i++) d[i] = (float)BitConverter.UInt16BitsToHalf(s[i]);
                break;
            }
            case (torch.ScalarType.BFloat16, torch.ScalarType.Float32):
            {
                var s = (ushort*)src + start;
                var d = (uint*)dst + start;
                for (; i + 16 <= count; i += 16)
                {
                    var (lo, hi) = Vector256.Widen(Vector256.Load(s + i));
                    (lo << 16).Store(d + i);
                    (hi << 16).Store(d + i + 8);
                }
                for (; i < count; i++) d[i] = (uint)s[i] << 16;
                break;
            }
            default: // float32 → bfloat16
            {
                var s = (float*)src + start;
                var d = (ushort*)dst + start;
                for (; i + 16 <= count; i += 16)
                    Vector256.Narrow(ToBf16Bits(Vector256.Load(s + i)), ToBf16Bits(Vector256.Load(s + i + 8))).Store(d + i);
                for (; i < count; i++) d[i] = Bf16Bits(s[i]);
                break;
            }
        }
    }

    /// <summary>
    /// Eight float16 values (zero-extended bits) as float32, exactly: the exponent and mantissa shifted into place and
    /// scaled by 2^112 (which also makes float16 subnormals normal), infinities and NaNs given the float32 exponent
    /// (NaNs quiet).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<float> HalfToSingle(Vector256<uint> h)
    {
        var magnitude = h & Vector256.Create(0x7FFFu);
        var shifted = magnitude << 13;
        var finite = (shifted.AsSingle() * Vector256.Create(5.192296858534828e33f)).AsUInt32(); // 2^112
        // Infinities keep a zero mantissa; NaNs come out quiet, as libtorch widens them.
        var quiet = Vector256.GreaterThan(magnitude, Vector256.Create(0x7C00u)) & Vector256.Create(0x00400000u);
        var special = shifted | Vector256.Create(0x7F800000u) | quiet;
        var bits = Vector256.ConditionalSelect(Vector256.GreaterThanOrEqual(magnitude, Vector256.Create(0x7C00u)), special, finite);
        return (bits | ((h & Vector256.Create(0x8000u)) << 16)).AsSingle();
    }

    /// <summary>Eight float32 values rounded to bfloat16 (nearest-even, NaN → 0x7FC0), the bits in the low halves.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static Vector256<uint> ToBf16Bits(Vector256<float> v)
    {
        var u = v.AsUInt32();
        var rounded = (u + Vector256.Create(0x7FFFu) + ((u >> 16) & Vector256<uint>.One)) >> 16;
        return Vector256.ConditionalSelect(Vector256.Equals(v, v).AsUInt32(), rounded, Vector256.Create(0x7FC0u));
    }

    /// <summary>One float32 rounded to bfloat16 bits (nearest-even, NaN → 0x7FC0).</summary>
    public static ushort Bf16Bits(float value)
    {
        if (float.IsNaN(value)) return 0x7FC0;
        var u = BitConverter.SingleToUInt32Bits(value);
        return (ushort)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
    }
}
