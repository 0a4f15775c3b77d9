using System.Runtime.Intrinsics.X86;

namespace MiniGpt4.Runtime;

/// <summary>CPU features .NET has no <c>IsSupported</c> for, read with <c>cpuid</c>.</summary>
internal static class CpuFeatures
{
    /// <summary>
    /// True when the CPU has AVX512-BF16 (<c>vdpbf16ps</c>) or AMX-BF16, which libtorch's bf16 matrix products use
    /// (oneDNN); without them libtorch widens bf16 in software and its bf16 GEMM runs several times slower.
    /// </summary>
    public static bool HasBf16MatrixInstructions { get; } = Detect();

    /// <summary>
    /// True on an Intel CPU (<c>cpuid</c> vendor "GenuineIntel"). Only a speed choice depends on it
    /// (<see cref="Language.Kernels.GemvMath.WideRowElements"/>), never a result.
    /// </summary>
    public static bool IsIntel { get; } = X86Base.IsSupported && Vendor() == "GenuineIntel";

    private static string Vendor()
    {
        var (_, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        Span<byte> name = stackalloc byte[12];
        BitConverter.TryWriteBytes(name, ebx);
        BitConverter.TryWriteBytes(name[4..], edx);
        BitConverter.TryWriteBytes(name[8..], ecx);
        return System.Text.Encoding.ASCII.GetString(name);
    }

    private static bool Detect()
    {
        if (!X86Base.IsSupported) return false;
        var (maxLeaf, _, _, _) = X86Base.CpuId(0, 0);
        if (maxLeaf < 7) return false;
        var (_, _, _, edx0) = X86Base.CpuId(7, 0);
        var (eax1, _, _, _) = X86Base.CpuId(7, 1);
        bool avx512Bf16 = (eax1 & (1 << 5)) != 0 && Avx512F.IsSupported, amxBf16 = (edx0 & (1 << 22)) != 0;
        return avx512Bf16 || amxBf16;
    }
}
