using static TorchSharp.torch;

namespace MiniGpt4.Tests.Support;

/// <summary>
/// libtorch's thread count is per OS thread, so a pool thread keeps the count of whatever ran on it last. Tests that
/// promise repeatable numbers set the pool threads to another count than the process-wide one, as a host's other work
/// may have, and check that the library does not follow it.
/// </summary>
internal static class PoolThreads
{
    /// <summary>Sets libtorch's thread count on the pool's threads (as many as run these items), then the process-wide value.</summary>
    public static void SetTorchThreads(int poolThreads, int processWide)
    {
        Parallel.For(0, 64 * Environment.ProcessorCount, new ParallelOptions { TaskScheduler = TaskScheduler.Default }, _ => set_num_threads(poolThreads));
        var reset = new Thread(() => set_num_threads(processWide));
        reset.Start();
        reset.Join();
    }
}
