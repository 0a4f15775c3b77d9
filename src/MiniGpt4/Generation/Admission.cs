namespace MiniGpt4.Generation;

/// <summary>
/// Admission for one pipeline: at most <see cref="AdmissionLimits.MaxConcurrentRequests"/> requests run at
/// once, at most <see cref="AdmissionLimits.MaxQueuedRequests"/> wait (first come, first served), and the
/// memory they reserve (KV cache for prompt plus new tokens, image buffers) together with the caches that
/// idle conversations keep stays within <see cref="AdmissionLimits.MemoryBudgetBytes"/>. Idle caches are the
/// one thing evicted, least recently used first, when a request needs their room. A request larger than
/// the whole budget is refused at once (<see cref="MiniGptCapacityException"/>); one that finds the queue
/// full is refused at once (<see cref="MiniGptQueueFullException"/>).
/// </summary>
internal sealed class RequestAdmission
{
    private readonly object _lock = new();
    private readonly LinkedList<Waiter> _queue = new();
    private readonly LinkedList<ConversationCache> _idle = new(); // first = least recently used
    private readonly Dictionary<ConversationCache, (LinkedListNode<ConversationCache> Node, long Bytes)> _idleIndex = new(ReferenceEqualityComparer.Instance);
    private long _used, _idleBytes;
    private int _active;
    private bool _closed;

    /// <param name="limits">Slots, queue and memory budget.</param>
    /// <param name="modelName">The model's name in telemetry (<c>gen_ai.request.model</c> on the queue metrics).</param>
    public RequestAdmission(AdmissionLimits limits, string? modelName = null)
    {
        Limits = limits;
        _tags = Telemetry.ModelTags(modelName ?? "unknown");
    }

    private readonly System.Diagnostics.TagList _tags;

    /// <summary>What a closed admission says is disposed (the facade that owns it).</summary>
    private const string Owner = "MiniGptPipeline";

    public AdmissionLimits Limits { get; }

    /// <summary>Requests waiting for admission.</summary>
    public int QueueDepth { get { lock (_lock) return _queue.Count; } }

    /// <summary>Requests admitted and not yet finished.</summary>
    public int ActiveRequests { get { lock (_lock) return _active; } }

    /// <summary>Bytes reserved by running requests plus bytes held by idle caches.</summary>
    public long ReservedBytes { get { lock (_lock) return _used + _idleBytes; } }

    /// <summary>Waits for a slot and <paramref name="bytes"/> of budget; dispose the lease when the request ends.</summary>
    public Task<AdmissionLease> AdmitAsync(long bytes, string what, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (bytes < 0) bytes = 0;
        lock (_lock)
        {
            if (_closed) throw new ObjectDisposedException(Owner);
            if (bytes > Limits.MemoryBudgetBytes)
                throw new MiniGptCapacityException(
                    $"{what} needs {Mib(bytes)} of memory (KV cache and image buffers), more than the whole budget of {Mib(Limits.MemoryBudgetBytes)}. " +
                    "Ask for fewer new tokens, send a shorter prompt, or raise MiniGptLoadOptions.MemoryBudgetBytes.", bytes, Limits.MemoryBudgetBytes);
            if (_queue.Count == 0 && TryGrant(bytes))
            {
                Telemetry.QueueWait.Record(0, _tags);
                return Task.FromResult(new AdmissionLease(this, bytes));
            }
            if (_queue.Count >= Limits.MaxQueuedRequests)
                throw new MiniGptQueueFullException(
                    $"The request queue is full ({_queue.Count} waiting, {_active} running); try again later.", _queue.Count);
            var waiter = new Waiter(bytes);
            waiter.Node = _queue.AddLast(waiter);
            Telemetry.QueueDepth.Add(1, _tags);
            if (cancellationToken.CanBeCanceled)
                waiter.Registration = cancellationToken.Register(() => Abandon(waiter, cancellationToken));
            return waiter.Task.Task;
        }
    }

    /// <summary>A cache kept between requests: counted against the budget and evicted first when room is needed.</summary>
    public void MarkIdle(ConversationCache cache)
    {
        lock (_lock)
        {
            RemoveIdle(cache);
            var bytes = cache.Bytes;
            if (bytes <= 0) return;
            _idleIndex[cache] = (_idle.AddLast(cache), bytes);
            _idleBytes += bytes;
        }
    }

    /// <summary>A cache a request is about to use (its memory is within that request's reservation) or that is gone.</summary>
    public void Forget(ConversationCache cache)
    {
        lock (_lock) RemoveIdle(cache);
    }

    private void RemoveIdle(ConversationCache cache)
    {
        if (!_idleIndex.Remove(cache, out var entry)) return;
        _idle.Remove(entry.Node);
        _idleBytes -= entry.Bytes;
    }

    private bool TryGrant(long bytes)
    {
        if (_active >= Limits.MaxConcurrentRequests || _used + bytes > Limits.MemoryBudgetBytes) return false;
        while (_used + _idleBytes + bytes > Limits.MemoryBudgetBytes && _idle.First is { } oldest)
        {
            var cache = oldest.Value;
            RemoveIdle(cache);
            cache.Evict();
        }
        _active++;
        _used += bytes;
        Telemetry.ActiveRequests.Add(1, _tags);
        return true;
    }

    internal void Release(long bytes)
    {
        List<(Waiter, AdmissionLease)> granted = new();
        lock (_lock)
        {
            _active--;
            _used -= bytes;
            Telemetry.ActiveRequests.Add(-1, _tags);
            while (_queue.First is { } head && TryGrant(head.Value.Bytes))
            {
                _queue.RemoveFirst();
                Telemetry.QueueDepth.Add(-1, _tags);
                Telemetry.QueueWait.Record(System.Diagnostics.Stopwatch.GetElapsedTime(head.Value.Enqueued).TotalSeconds, _tags);
                granted.Add((head.Value, new AdmissionLease(this, head.Value.Bytes)));
            }
        }
        foreach (var (w, lease) in granted)
        {
            w.Registration.Dispose();
            if (!w.Task.TrySetResult(lease)) lease.Dispose();
        }
    }

    /// <summary>The pipeline is going away: waiting requests end with <see cref="ObjectDisposedException"/>, new ones are refused.</summary>
    public void Close()
    {
        List<Waiter> waiting;
        lock (_lock)
        {
            _closed = true;
            waiting = _queue.ToList();
            if (waiting.Count > 0) Telemetry.QueueDepth.Add(-waiting.Count, _tags);
            _queue.Clear();
        }
        foreach (var w in waiting)
        {
            w.Registration.Dispose();
            w.Task.TrySetException(new ObjectDisposedException(Owner));
        }
    }

    private void Abandon(Waiter waiter, CancellationToken ct)
    {
        lock (_lock)
        {
            if (waiter.Node?.List is null) return; // already granted
            _queue.Remove(waiter.Node);
            Telemetry.QueueDepth.Add(-1, _tags);
        }
        waiter.Task.TrySetCanceled(ct);
    }

    private static string Mib(long bytes) => $"{bytes / (1024.0 * 1024):0.#} MiB";

    private sealed class Waiter(long bytes)
    {
        public long Bytes { get; } = bytes;
        public long Enqueued { get; } = System.Diagnostics.Stopwatch.GetTimestamp();
        public LinkedListNode<Waiter>? Node { get; set; }
        public CancellationTokenRegistration Registration { get; set; }
        public TaskCompletionSource<AdmissionLease> Task { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}

/// <summary>
/// One admitted request's slot and memory. Dispose it when the request ends; a lease whose owner
/// was abandoned without being disposed (a stream read once and dropped) is released by its finalizer,
/// so an abandoned request never holds a slot for ever.
/// </summary>
internal sealed class AdmissionLease : IDisposable
{
    private RequestAdmission? _owner;

    internal AdmissionLease(RequestAdmission owner, long bytes) { _owner = owner; Bytes = bytes; }

    /// <summary>Bytes reserved.</summary>
    public long Bytes { get; }

    public void Dispose()
    {
        Interlocked.Exchange(ref _owner, null)?.Release(Bytes);
        GC.SuppressFinalize(this);
    }

    ~AdmissionLease() => Interlocked.Exchange(ref _owner, null)?.Release(Bytes);
}

/// <summary>The admission limits of one pipeline (from <see cref="MiniGptLoadOptions"/>, validated there).</summary>
internal sealed record AdmissionLimits(int MaxConcurrentRequests, int MaxQueuedRequests, long MemoryBudgetBytes)
{
    public static AdmissionLimits From(MiniGptLoadOptions options) =>
        new(options.MaxConcurrentRequests, options.MaxQueuedRequests, options.MemoryBudgetBytes ?? MiniGptLoadOptions.DefaultMemoryBudgetBytes());
}
