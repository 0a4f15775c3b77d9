namespace MiniGpt4.Runtime;

/// <summary>
/// Serialises the native calls on one model and makes disposal safe: every forward, step or encode runs inside
/// <see cref="RunAsync{T}"/> or <see cref="Run{T}"/>, which hold the gate only for that one call (never while control
/// is with a caller, across a <c>yield</c>), and <see cref="Close"/> waits for the call in flight before it frees the
/// weights. A call that starts after <see cref="Close"/> throws <see cref="ObjectDisposedException"/>.
/// </summary>
internal sealed class ComputeGate
{
    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly string _owner;
    private volatile bool _closed;

    public ComputeGate(string owner) => _owner = owner;

    public bool IsClosed => _closed;

    /// <summary>
    /// Runs <paramref name="work"/> on the thread pool while holding the gate. Waiting for the gate
    /// honours <paramref name="cancellationToken"/>; a call that has started runs to its end (its own
    /// code checks the token between layers or steps). A caller already on a thread-pool thread with no
    /// synchronization context (a generation loop after its first await) runs the work where it is: handing
    /// each decode step to another pool thread cost about 120 µs per token, most of a small model's step.
    /// </summary>
    public async Task<T> RunAsync<T>(Func<T> work, CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            ObjectDisposedException.ThrowIf(_closed, _owner);
            cancellationToken.ThrowIfCancellationRequested();
            if (Thread.CurrentThread.IsThreadPoolThread && SynchronizationContext.Current is null) return work();
            return await Task.Run(work, CancellationToken.None).ConfigureAwait(false);
        }
        finally { _lock.Release(); }
    }

    /// <summary>Runs <paramref name="work"/> on the calling thread while holding the gate.</summary>
    public T Run<T>(Func<T> work, CancellationToken cancellationToken = default)
    {
        using (Enter(cancellationToken)) return work();
    }

    /// <summary>Holds the gate on the calling thread until the result is disposed (for work on spans, which lambdas cannot capture).</summary>
    public Held Enter(CancellationToken cancellationToken = default)
    {
        _lock.Wait(cancellationToken);
        if (_closed || cancellationToken.IsCancellationRequested)
        {
            _lock.Release();
            ObjectDisposedException.ThrowIf(_closed, _owner);
            cancellationToken.ThrowIfCancellationRequested();
        }
        return new Held(_lock);
    }

    public readonly struct Held(SemaphoreSlim held) : IDisposable
    {
        public void Dispose() => held.Release();
    }

    /// <summary>Runs <paramref name="work"/> under the gate, open or closed (frees memory that outlives the model, such as a cache).</summary>
    public void RunAlways(Action work)
    {
        _lock.Wait();
        try { work(); }
        finally { _lock.Release(); }
    }

    /// <summary>Waits for the call in flight, then runs <paramref name="free"/> once; later calls throw <see cref="ObjectDisposedException"/>.</summary>
    public void Close(Action free)
    {
        _lock.Wait();
        try
        {
            if (_closed) return;
            _closed = true;
            free();
        }
        finally { _lock.Release(); }
    }
}
