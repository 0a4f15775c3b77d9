using System.Runtime.InteropServices;

namespace MiniGpt4.Runtime;

/// <summary>
/// Asks Linux to back a large, not yet written allocation with 2 MiB pages (<c>madvise(MADV_HUGEPAGE)</c>), so that
/// filling it costs one page fault per 2 MiB instead of one per 4 KiB.
/// </summary>
/// <remarks>
/// Loading a model in another dtype than its files (the released float16 files into a bfloat16 model) writes every
/// weight into fresh memory, and each first write of a 4 KiB page is a page fault. On the virtual machines we measure
/// on, a fault costs about 17 µs: fresh memory fills at 0.14–0.25 GB/s with 4 KiB pages, against 17 GB/s with 2 MiB
/// pages once the host has backed them (1.7 GB/s the very first time). See docs/weights.md. Only the whole 2 MiB
/// pages inside the range are advised; the hint is ignored where transparent huge pages are off (<c>never</c>), on
/// other systems, and when it fails: it never changes a value, only how fast memory is first touched.
/// </remarks>
internal static class HugePages
{
    private const long PageBytes = 2L << 20;
    private const int MadvHugePage = 14;

    /// <summary>Advises the whole 2 MiB pages inside <c>[address, address + bytes)</c>; smaller ranges are left alone.</summary>
    public static void Advise(nint address, long bytes)
    {
        if (!OperatingSystem.IsLinux() || bytes < 2 * PageBytes) return;
        var start = (address + (nint)(PageBytes - 1)) & ~(nint)(PageBytes - 1);
        var end = (address + (nint)bytes) & ~(nint)(PageBytes - 1);
        if (end > start) _ = madvise(start, (nuint)(end - start), MadvHugePage);
    }

    [DllImport("libc", EntryPoint = "madvise")]
    private static extern int madvise(nint address, nuint length, int advice);
}
