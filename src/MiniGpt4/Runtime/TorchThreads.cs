using static TorchSharp.torch;

namespace MiniGpt4.Runtime;

/// <summary>
/// libtorch's intra-op thread count belongs to each OS thread (OpenMP's per-thread setting): <c>set_num_threads</c>
/// changes the calling thread's count and the process-wide value, and a thread takes the process-wide value only the
/// first time it runs a parallel operation. A pool thread therefore keeps whatever count it last saw, and a sum
/// reduced over one thread or two rounds differently. Work whose numbers must repeat (a resumed training run equal
/// to an uninterrupted one) pins the count on the thread that does it.
/// </summary>
internal static class TorchThreads
{
    /// <summary>
    /// Sets the calling thread's libtorch thread count to <paramref name="threads"/>, or, when null, to the
    /// process-wide value (libtorch's default until something sets it).
    /// </summary>
    public static void Pin(int? threads)
    {
        var n = threads ?? ProcessWide();
        if (get_num_threads() != n) set_num_threads(n);
    }

    /// <summary>
    /// The process-wide thread count, read on a fresh thread: TorchSharp exposes only the calling thread's count,
    /// and a thread that has never run libtorch starts from the process-wide one.
    /// </summary>
    public static int ProcessWide()
    {
        var n = 0;
        var probe = new Thread(() => n = get_num_threads()) { IsBackground = true, Name = "MiniGpt4 thread-count probe" };
        probe.Start();
        probe.Join();
        return n;
    }
}
