using System.Diagnostics;

namespace MiniGpt4.Runtime;

/// <summary>One parallel region's body: <see cref="Run"/> is called once for each chunk index, from any pool thread.</summary>
internal abstract class PoolWork
{
    /// <summary>Does chunk <paramref name="chunk"/>; chunks of one region must be independent of each other.</summary>
    public abstract void Run(int chunk);
}

/// <summary>
/// The threads of the CPU decode step: the calling thread plus up to <c>threads − 1</c> workers that claim chunks of a
/// region dynamically, so a core taken by another process simply does fewer chunks. Built for many short regions
/// (a decode step runs about five per block): a worker spins briefly after a region for the next one, then parks on a
/// semaphore and costs nothing, so the pool never keeps a core busy between requests (libgomp's pool, which spins for
/// a long time after each libtorch op, is what made 2-thread decode slower than 1 thread when both ran). Nothing is
/// allocated per region. One region runs at a time; a call made while another thread's region runs does its chunks on
/// its own thread, so the process can share one pool (<see cref="Shared"/>) and concurrent callers stay correct.
/// </summary>
internal sealed class WorkerPool : IDisposable
{
    /// <summary>How long an idle worker spins for the next region before it parks.</summary>
    private static readonly long SpinTicks = Stopwatch.Frequency / 5000; // 200 µs

    private readonly List<Worker> _workers = [];
    private readonly object _grow = new();
    private PoolWork? _work;
    // generation (32 bits) | chunk count (16 bits) | next chunk to claim (16 bits): one CAS claims a chunk of the
    // current region only, so a worker that wakes late can never run a chunk of a region that has ended.
    private long _state;
    private int _done;
    private volatile bool _disposed;
    private int _busy;

    /// <summary>The process's pool (its workers park when idle, so an unused pool costs nothing).</summary>
    public static WorkerPool Shared { get; } = new();

    /// <summary>Most chunks one region may have.</summary>
    public const int MaxChunks = ushort.MaxValue;

    /// <summary>
    /// Runs <paramref name="work"/> for chunks <c>0 .. chunks−1</c> on the calling thread and up to
    /// <paramref name="threads"/> − 1 workers, and returns when every chunk is done. An exception in a chunk is
    /// rethrown here after the region ends (the first one; later chunks still run).
    /// </summary>
    public void Run(PoolWork work, int chunks, int threads)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(chunks, MaxChunks);
        if (chunks <= 0) return;
        if (threads <= 1 || chunks == 1 || Interlocked.Exchange(ref _busy, 1) == 1)
        {
            for (var c = 0; c < chunks; c++) work.Run(c);
            return;
        }
        try { RunShared(work, chunks, threads); }
        finally { Volatile.Write(ref _busy, 0); }
    }

    private void RunShared(PoolWork work, int chunks, int threads)
    {
        EnsureWorkers(threads - 1);
        _work = work;
        _error = null;
        Volatile.Write(ref _done, 0);
        var generation = (int)(Volatile.Read(ref _state) >> 32) + 1;
        Volatile.Write(ref _state, ((long)generation << 32) | ((long)chunks << 16));
        for (var i = 0; i < threads - 1; i++) _workers[i].Wake();
        Claim(generation);
        var spin = new SpinWait();
        while (Volatile.Read(ref _done) < chunks) spin.SpinOnce(sleep1Threshold: -1);
        _work = null;
        if (_error is { } error) System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(error);
    }

    private Exception? _error;

    /// <summary>Claims and runs chunks of region <paramref name="generation"/> until none is left.</summary>
    private void Claim(int generation)
    {
        while (true)
        {
            var state = Volatile.Read(ref _state);
            if ((int)(state >> 32) != generation) return;
            int chunks = (int)(state >> 16) & 0xFFFF, next = (int)state & 0xFFFF;
            if (next >= chunks) return;
            if (Interlocked.CompareExchange(ref _state, state + 1, state) != state) continue;
            // The region cannot end while this chunk is claimed and not done, so _work is still its body.
            try { _work!.Run(next); }
            catch (Exception e) { Interlocked.CompareExchange(ref _error, e, null); }
            Interlocked.Increment(ref _done);
        }
    }

    private void EnsureWorkers(int count)
    {
        if (_workers.Count >= count) return;
        lock (_grow)
        {
            while (_workers.Count < count) _workers.Add(new Worker(this, _workers.Count));
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        foreach (var w in _workers) w.Stop();
    }

    private sealed class Worker
    {
        private readonly WorkerPool _pool;
        private readonly SemaphoreSlim _wake = new(0);
        private readonly Thread _thread;
        private int _parked;

        public Worker(WorkerPool pool, int index)
        {
            _pool = pool;
            _thread = new Thread(Loop) { IsBackground = true, Name = $"MiniGpt4 decode {index + 1}" };
            _thread.Start();
        }

        /// <summary>Unparks the worker if it sleeps (a spinning worker sees the new region by itself).</summary>
        public void Wake()
        {
            if (Volatile.Read(ref _parked) == 1 && Interlocked.CompareExchange(ref _parked, 0, 1) == 1) _wake.Release();
        }

        public void Stop()
        {
            Interlocked.Exchange(ref _parked, 0);
            _wake.Release();
        }

        private void Loop()
        {
            var seen = 0;
            while (!_pool._disposed)
            {
                var generation = WaitForRegion(seen);
                if (_pool._disposed) return;
                seen = generation;
                _pool.Claim(generation);
            }
        }

        /// <summary>Spins for a new generation, then parks until <see cref="Wake"/>; returns the generation seen.</summary>
        private int WaitForRegion(int seen)
        {
            var start = Stopwatch.GetTimestamp();
            while (true)
            {
                var generation = (int)(Volatile.Read(ref _pool._state) >> 32);
                if (generation != seen || _pool._disposed) return generation;
                if (Stopwatch.GetTimestamp() - start < SpinTicks)
                {
                    Thread.SpinWait(32);
                    continue;
                }
                Volatile.Write(ref _parked, 1);
                if ((int)(Volatile.Read(ref _pool._state) >> 32) != seen || _pool._disposed)
                {
                    // A region started meanwhile: unpark ourselves, unless its caller already did (then take its release).
                    if (Interlocked.CompareExchange(ref _parked, 0, 1) == 1) continue;
                }
                _wake.Wait();
                start = Stopwatch.GetTimestamp();
            }
        }
    }
}
