using System.Globalization;

namespace MiniGpt4.Tests.Fuzzing;

/// <summary>What one measured action cost: managed bytes allocated (all threads) and growth of the peak resident set.</summary>
internal readonly record struct MemoryUse(long ManagedBytes, long PeakRssGrowthBytes)
{
    public override string ToString() => $"{ManagedBytes >> 10} KB managed allocations, peak RSS +{PeakRssGrowthBytes >> 10} KB";
}

/// <summary>
/// Measures the memory an action costs, for "refused before anything is allocated" assertions:
/// <see cref="GC.GetTotalAllocatedBytes"/> before and after, and the peak resident set (Linux
/// <c>VmHWM</c>, reset through <c>/proc/self/clear_refs</c> just before the action) minus the resident
/// set before it. Where the peak cannot be reset (not Linux, or no permission), the resident set after
/// the action stands in for the peak. Tests in this assembly run one at a time (xunit.runner.json), so
/// other tests' allocations do not blur the numbers.
/// </summary>
internal static class MemoryProbe
{
    public static MemoryUse Measure(Action action)
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        var rssBefore = Status("VmRSS:");
        var peakReset = TryResetPeak();
        var managedBefore = GC.GetTotalAllocatedBytes(precise: true);
        action();
        var managed = GC.GetTotalAllocatedBytes(precise: true) - managedBefore;
        var peak = peakReset ? Status("VmHWM:") : Status("VmRSS:");
        return new MemoryUse(managed, Math.Max(0, peak - rssBefore));
    }

    /// <summary>Runs <paramref name="action"/> under <see cref="Measure"/> and returns the exception it threw (null if none).</summary>
    public static (Exception? Thrown, MemoryUse Use) MeasureThrow(Action action)
    {
        Exception? thrown = null;
        var use = Measure(() =>
        {
            try { action(); }
            catch (Exception ex) { thrown = ex; }
        });
        return (thrown, use);
    }

    /// <summary>The resident set now (Linux <c>VmRSS</c>; elsewhere the working set).</summary>
    public static long Current() => Status("VmRSS:");

    /// <summary>The peak resident set since the last reset (Linux <c>VmHWM</c>).</summary>
    public static long Peak() => Status("VmHWM:");

    /// <summary>Resets the peak resident set; false where that is not possible (then use <see cref="Current"/>).</summary>
    public static bool ResetPeak() => CanReset && TryResetPeak();

    private static readonly bool CanReset = TryResetPeak();

    private static bool TryResetPeak()
    {
        if (!OperatingSystem.IsLinux()) return false;
        try
        {
            File.WriteAllText("/proc/self/clear_refs", "5");
            return true;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException) { return false; }
    }

    /// <summary>A <c>/proc/self/status</c> field in bytes (0 where there is none).</summary>
    private static long Status(string field)
    {
        if (!OperatingSystem.IsLinux()) return Environment.WorkingSet;
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line[field.Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture) * 1024;
        return 0;
    }
}
