using System.Runtime.InteropServices;

namespace MiniGpt4.Runtime;

/// <summary>
/// The optional native library <c>libminigpt4kernels</c> (source: <c>src/MiniGpt4/Native</c>): decode products with
/// instructions .NET 10 has no intrinsic for (512-bit <c>vpdpbusd</c>, <c>vdpbf16ps</c>). Each kernel computes exactly what its managed
/// counterpart defines, so results never depend on whether the library is there; it is only faster.
/// </summary>
/// <remarks>
/// Looked up once, beside the assembly or in the package's <c>runtimes/linux-x64/native</c>. Absent library, a CPU
/// without the instructions, or <c>MINIGPT4_NATIVE_KERNELS=0</c> in the environment: the managed kernels run.
/// </remarks>
internal static unsafe class NativeKernels
{
    private const int Vnni512Bit = 1;
    private const int Bf16Dot512Bit = 2;
    private const int Avx512FBit = 4;

    private static readonly delegate* unmanaged<int, byte*, ushort*, byte*, long, float*, long, long, int, long, long, void> QuantRowsFn;
    private static readonly delegate* unmanaged<ushort*, ushort*, float*, long, long, int, long, long, long, void> Bf16RowsFn;
    private static readonly delegate* unmanaged<ushort*, ushort*, long, int, void> HalfToBf16Fn;
    private static readonly delegate* unmanaged<ushort*, ushort*, float*, long, long, int, long, long, long, void> F16RowsFn;

    static NativeKernels()
    {
        if (Environment.GetEnvironmentVariable("MINIGPT4_NATIVE_KERNELS") == "0") return;
        if (!OperatingSystem.IsLinux() || RuntimeInformation.ProcessArchitecture != Architecture.X64) return;
        if (!NativeLibrary.TryLoad("minigpt4kernels", typeof(NativeKernels).Assembly, DllImportSearchPath.AssemblyDirectory, out var lib)
            && !NativeLibrary.TryLoad(Path.Combine(AppContext.BaseDirectory, "libminigpt4kernels.so"), out lib))
            return;
        // A library from another build that lacks an export is treated as absent.
        if (!NativeLibrary.TryGetExport(lib, "mg_features", out var features)
            || !NativeLibrary.TryGetExport(lib, "mg_quant_rows_vnni512", out var quantRows))
            return;
        Loaded = true;
        // The OS must also save the 512-bit registers (the runtime's own check covers that).
        var cpu = ((delegate* unmanaged<int>)features)();
        if ((cpu & Vnni512Bit) != 0 && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported)
        {
            QuantRowsFn = (delegate* unmanaged<int, byte*, ushort*, byte*, long, float*, long, long, int, long, long, void>)quantRows;
            HasVnni512 = true;
        }
        if ((cpu & Bf16Dot512Bit) != 0 && System.Runtime.Intrinsics.X86.Avx512F.IsSupported
            && NativeLibrary.TryGetExport(lib, "mg_bf16_rows", out var bf16Rows))
        {
            Bf16RowsFn = (delegate* unmanaged<ushort*, ushort*, float*, long, long, int, long, long, long, void>)bf16Rows;
            HasBf16Dot = true;
            if (System.Runtime.Intrinsics.X86.Avx512BW.IsSupported && NativeLibrary.TryGetExport(lib, "mg_f16_rows", out var f16Rows))
            {
                F16RowsFn = (delegate* unmanaged<ushort*, ushort*, float*, long, long, int, long, long, long, void>)f16Rows;
                HasF16Dot = true;
            }
        }
        if ((cpu & Avx512FBit) != 0 && System.Runtime.Intrinsics.X86.Avx512F.IsSupported
            && NativeLibrary.TryGetExport(lib, "mg_f16_to_bf16", out var halfToBf16))
        {
            HalfToBf16Fn = (delegate* unmanaged<ushort*, ushort*, long, int, void>)halfToBf16;
            HasHalfToBf16 = true;
        }
    }

    /// <summary>True when the native library was found and loaded.</summary>
    public static bool Loaded { get; }

    /// <summary>True when the 512-bit VNNI quantized products can run here.</summary>
    public static bool HasVnni512 { get; }

    /// <summary>True when the bf16 products can run on <c>vdpbf16ps</c> (AVX512-BF16) here.</summary>
    public static bool HasBf16Dot { get; }

    /// <summary>True when products of float16 weight rows can run on <c>vcvtph2ps</c>, <c>vcvtne2ps2bf16</c> and <c>vdpbf16ps</c> here.</summary>
    public static bool HasF16Dot { get; }

    /// <summary>True when float16 → bf16 rounding can run on <c>vcvtph2ps</c> (AVX-512F) here.</summary>
    public static bool HasHalfToBf16 { get; }

    /// <summary>
    /// <see cref="Bf16Rows"/> for float16 weight rows, each weight rounded to bf16 as it is read (as <see cref="HalfToBf16"/>
    /// rounds it): every element equals the bf16 product's over the rounded rows.
    /// </summary>
    public static void F16Rows(ushort* w, ushort* x, float* y, long n, long outFeatures, int rows, long rowStart, long rowEnd, long wideRow)
    {
        if (!HasF16Dot) throw new PlatformNotSupportedException("The native float16 products are not available on this machine.");
        F16RowsFn(w, x, y, n, outFeatures, rows, rowStart, rowEnd, wideRow);
    }

    /// <summary>
    /// <paramref name="n"/> float16 values rounded to bf16 exactly as <see cref="FloatConversion"/> does
    /// (nearest-even, NaN → 0x7FC0), on the calling thread; .NET 10 has no intrinsic for <c>vcvtph2ps</c>. With
    /// <paramref name="bypassCaches"/> (for a destination much larger than the caches, read only later) the stores
    /// go straight to memory when <paramref name="dst"/> is 64-byte aligned.
    /// </summary>
    public static void HalfToBf16(ushort* src, ushort* dst, long n, bool bypassCaches = false)
    {
        if (!HasHalfToBf16) throw new PlatformNotSupportedException("The native float16 conversion is not available on this machine.");
        HalfToBf16Fn(src, dst, n, bypassCaches ? 1 : 0);
    }

    /// <summary>
    /// <c>y[m, r] = dot(w[r], x[m])</c> for packed rows <c>r ∈ [rowStart, rowEnd)</c> (8 or 4 <paramref name="bits"/>) and the
    /// quantized activation rows at <paramref name="x"/>, <paramref name="xStride"/> bytes apart.
    /// </summary>
    public static void QuantRows(int bits, byte* w, ushort* scales, byte* x, long xStride, float* y, long supers, long outFeatures,
        int rows, long rowStart, long rowEnd)
    {
        if (!HasVnni512) throw new PlatformNotSupportedException("The native 512-bit VNNI kernels are not available on this machine.");
        QuantRowsFn(bits, w, scales, x, xStride, y, supers, outFeatures, rows, rowStart, rowEnd);
    }

    /// <summary>
    /// <c>GemvMath.RowsBf16</c> on <c>vdpbf16ps</c>: <c>y[m, r] = dot(w[r], x[m])</c> for bf16 weight rows
    /// <c>r ∈ [rowStart, rowEnd)</c> and bf16 activation rows <c>m &lt; rows</c>, every element <c>GemvMath.DotBf16</c>'s.
    /// </summary>
    public static void Bf16Rows(ushort* w, ushort* x, float* y, long n, long outFeatures, int rows, long rowStart, long rowEnd, long wideRow)
    {
        if (!HasBf16Dot) throw new PlatformNotSupportedException("The native AVX512-BF16 kernels are not available on this machine.");
        Bf16RowsFn(w, x, y, n, outFeatures, rows, rowStart, rowEnd, wideRow);
    }
}
