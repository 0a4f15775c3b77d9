using MiniGpt4.Runtime;
using System.Runtime.InteropServices;
using MiniGpt4.Language.Kernels;
using MiniGpt4.Language.Quantization;
using Xunit;

namespace MiniGpt4.Tests.Language.Kernels;

/// <summary>
/// The optional native kernels are built on Linux x64 and must then load and be chosen where the CPU has their
/// instructions: otherwise the bit-for-bit comparisons in the kernel tests would silently skip them.
/// </summary>
public class NativeKernelsTests
{
    private static bool LinuxX64 => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64;

    [SkippableFact]
    public void The_library_built_beside_the_assembly_loads()
    {
        var file = Path.Combine(AppContext.BaseDirectory, "libminigpt4kernels.so");
        var ci = string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);
        Skip.IfNot(LinuxX64, "the native kernels are built for Linux x64 only");
        Skip.If(Environment.GetEnvironmentVariable("MINIGPT4_NATIVE_KERNELS") == "0", "MINIGPT4_NATIVE_KERNELS=0 turns them off");
        if (!ci) Skip.IfNot(File.Exists(file), "libminigpt4kernels.so was not built (no C compiler); the managed kernels run");
        Assert.True(File.Exists(file), $"{file} is missing: CI builds it (cc is installed there)");
        Assert.True(NativeKernels.Loaded, $"{file} is there but did not load");
    }

    [SkippableFact]
    public void A_cpu_with_avx512_vnni_gets_the_native_quantized_products()
    {
        Skip.IfNot(LinuxX64 && NativeKernels.Loaded, "the native library is not loaded here");
        var vnni = CpuFlag("avx512_vnni") && System.Runtime.Intrinsics.X86.Avx512BW.IsSupported;
        Assert.Equal(vnni, NativeKernels.HasVnni512);
        if (vnni) Assert.Equal(QuantIsa.Avx512Vnni, QuantMath.Best);
    }

    [SkippableFact]
    public void A_cpu_with_avx512_bf16_gets_the_native_bf16_products()
    {
        Skip.IfNot(LinuxX64 && NativeKernels.Loaded, "the native library is not loaded here");
        var bf16 = CpuFlag("avx512_bf16") && System.Runtime.Intrinsics.X86.Avx512F.IsSupported;
        Assert.Equal(bf16, NativeKernels.HasBf16Dot);
    }

    /// <summary>Whether the kernel lists <paramref name="flag"/> among the CPU's flags (<c>/proc/cpuinfo</c>).</summary>
    private static bool CpuFlag(string flag) =>
        (File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("flags", StringComparison.Ordinal)) ?? "").Split(' ').Contains(flag);
}
