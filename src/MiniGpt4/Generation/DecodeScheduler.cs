using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using MiniGpt4.Abstractions;
using MiniGpt4.Models;

namespace MiniGpt4.Generation;

/// <summary>
/// Continuous batching for one language model: a loop that, per iteration, admits waiting answers (their prefill,
/// oldest first, within <see cref="PrefillPositionsPerIteration"/>; or, where the model prefills in parts that change
/// no number, <see cref="IBatchedLanguageModel.PrefillChunkPositions"/> positions of the oldest answer's prompt, so
/// that running answers keep stepping while a long prompt is prefilled), then runs one decode step for every running answer
/// as one batched forward (<see cref="IBatchedLanguageModel.StepBatch"/>: each weight read once for all rows, every beam
/// a row), and retires the answers that finished, failed, were cancelled or abandoned before the next step. Sampling,
/// beams and stop rules stay per answer (<see cref="GenerationRun"/>, its own seed); the kernel is row-invariant, so an
/// answer's tokens never depend on what else runs (docs/batching.md).
/// </summary>
/// <remarks>The loop runs on a thread of its own while there is work and ends when there is none.</remarks>
internal sealed class DecodeScheduler(ILanguageModel model)
{
    /// <summary>
    /// Prompt positions prefilled per iteration at most (at least one whole prompt): bounds how long running answers
    /// wait for newcomers while a burst is admitted.
    /// </summary>
    public const int PrefillPositionsPerIteration = 512;

    private readonly object _lock = new();
    private readonly Queue<ScheduledAnswer> _waiting = new();
    private readonly List<ScheduledAnswer> _running = new(); // owned by the loop
    private readonly IBatchedLanguageModel? _chunked = model as IBatchedLanguageModel;
    private ScheduledAnswer? _prefilling; // the answer whose prompt is being prefilled in parts (the loop's, read under _lock)
    private readonly List<ScheduledAnswer> _batch = new();
    private readonly List<int> _rowsOf = new();
    private readonly List<LanguageModelCache> _caches = new();
    private readonly List<int> _tokens = new();
    private float[] _logits = [];
    private readonly AutoResetEvent _wake = new(false);
    private bool _looping;
    private long _sharedSteps, _stepsDuringPrefill;

    /// <summary>Forwards so far that stepped two answers or more together (diagnostics, tests).</summary>
    public long SharedSteps => Interlocked.Read(ref _sharedSteps);

    /// <summary>Forwards so far that ran while another answer's prompt was part-way prefilled (diagnostics, tests).</summary>
    public long StepsDuringPrefill => Interlocked.Read(ref _stepsDuringPrefill);

    /// <summary>Queues an answer for admission; its updates arrive through <see cref="ScheduledAnswer.ReadAsync"/>.</summary>
    public void Submit(ScheduledAnswer answer)
    {
        answer.Attach(() => _wake.Set());
        lock (_lock)
        {
            _waiting.Enqueue(answer);
            if (_looping)
            {
                _wake.Set(); // the loop may be waiting for readers
                return;
            }
            _looping = true;
        }
        _ = Task.Factory.StartNew(Loop, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    private void Loop()
    {
        try
        {
            Run();
        }
        catch (Exception e) // a bug in the loop itself: no answer may wait for ever
        {
            List<ScheduledAnswer> left;
            lock (_lock)
            {
                left = [.. _running, .. _waiting];
                if (_prefilling is { } p) left.Add(p);
                _prefilling = null;
                _running.Clear();
                _waiting.Clear();
                _looping = false;
            }
            foreach (var answer in left) answer.End(e);
        }
    }

    private void Run()
    {
        while (true)
        {
            List<ScheduledAnswer> admitted = [];
            ScheduledAnswer? part = null;
            lock (_lock)
            {
                if (_running.Count == 0 && _waiting.Count == 0 && _prefilling is null)
                {
                    _looping = false;
                    return;
                }
                // Read per iteration: the model's prefill path (and so whether parts change a number) is a setting.
                if (_prefilling is not null || _chunked is { PrefillChunkPositions: > 0 })
                {
                    if (_prefilling is null && _waiting.TryDequeue(out var oldest)) _prefilling = oldest;
                    part = _prefilling;
                }
                else
                {
                    var positions = 0;
                    while (_waiting.TryPeek(out var next) && (admitted.Count == 0 || positions + next.PromptPositions <= PrefillPositionsPerIteration))
                    {
                        admitted.Add(_waiting.Dequeue());
                        positions += next.PromptPositions;
                    }
                }
            }
            if (part is not null && PrefillPart(part))
                lock (_lock) _prefilling = null;
            foreach (var answer in admitted) Admit(answer);
            // Nothing could move (every running answer waits for its reader): sleep until a reader, a newcomer or a
            // cancellation wakes the loop.
            if (!Step() && admitted.Count == 0 && part is null) _wake.WaitOne();
        }
    }

    /// <summary>Prefills an answer and streams its first token (which needs no further forward).</summary>
    private void Admit(ScheduledAnswer answer)
    {
        if (Leaving(answer)) return;
        try
        {
            answer.Run.Prefill(answer.Token);
        }
        catch (Exception e)
        {
            answer.End(e);
            return;
        }
        Start(answer);
    }

    /// <summary>
    /// Prefills the next <see cref="IBatchedLanguageModel.PrefillChunkPositions"/> positions of an answer's prompt (all of it
    /// when the model no longer splits prompts), and starts the answer once its prompt
    /// is complete. True when the answer is done with its prefill (started, or ended).
    /// </summary>
    private bool PrefillPart(ScheduledAnswer answer)
    {
        if (Leaving(answer)) return true;
        try
        {
            var chunk = _chunked?.PrefillChunkPositions ?? 0;
            if (!answer.Run.PrefillPart(chunk > 0 ? chunk : int.MaxValue, answer.Token)) return false;
        }
        catch (Exception e)
        {
            answer.End(e);
            return true;
        }
        Start(answer);
        return true;
    }

    /// <summary>Adds a prefilled answer to the running ones and streams its first token, before the next newcomer's prefill.</summary>
    private void Start(ScheduledAnswer answer)
    {
        _running.Add(answer);
        try
        {
            if (!answer.Run.BeginNext().IsEmpty) throw new InvalidOperationException("The first step of an answer needs no forward.");
        }
        catch (Exception e)
        {
            answer.End(e);
            return;
        }
        Complete(answer);
    }

    /// <summary>
    /// One decode step for every running answer whose reader keeps up (<see cref="ScheduledAnswer.Backlogged"/> answers
    /// wait): one batched forward, then each answer's own decision. False when no answer moved.
    /// </summary>
    private bool Step()
    {
        var moved = false;
        _batch.Clear();
        _rowsOf.Clear();
        _caches.Clear();
        _tokens.Clear();
        for (var i = 0; i < _running.Count; i++)
        {
            var answer = _running[i];
            if (Leaving(answer))
            {
                moved = true;
                continue;
            }
            if (answer.Backlogged) continue;
            moved = true;
            ReadOnlySpan<int> feed;
            try
            {
                feed = answer.Run.BeginNext();
            }
            catch (Exception e)
            {
                answer.End(e);
                continue;
            }
            if (feed.IsEmpty)
            {
                Complete(answer);
                continue;
            }
            _batch.Add(answer);
            _rowsOf.Add(feed.Length);
            _caches.Add(answer.Cache);
            foreach (var t in feed) _tokens.Add(t);
        }
        if (_batch.Count > 1) Interlocked.Increment(ref _sharedSteps);
        if (_batch.Count > 0 && Volatile.Read(ref _prefilling) is not null) Interlocked.Increment(ref _stepsDuringPrefill);
        if (_batch.Count > 0) Forward();
        _running.RemoveAll(a => a.Ended);
        return moved;
    }

    /// <summary>The batch's forward: one call for every row, or (a model that cannot batch) one call per answer.</summary>
    private void Forward()
    {
        var vocab = model.VocabSize;
        var total = _tokens.Count * vocab;
        if (_logits.Length < total) _logits = new float[total];
        var logits = _logits.AsSpan(0, total);
        var tokens = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_tokens);
        if (model is IBatchedLanguageModel batched)
        {
            try
            {
                batched.StepBatch(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_caches), tokens, logits);
            }
            catch (Exception e)
            {
                foreach (var answer in _batch) answer.End(e);
                return;
            }
        }
        for (int i = 0, at = 0; i < _batch.Count; at += _rowsOf[i], i++)
        {
            var answer = _batch[i];
            var rows = logits.Slice(at * vocab, _rowsOf[i] * vocab);
            try
            {
                if (model is IBatchedLanguageModel) rows.CopyTo(answer.Run.FeedLogits);
                else model.Step(answer.Cache, tokens.Slice(at, _rowsOf[i]), answer.Run.FeedLogits);
            }
            catch (Exception e)
            {
                answer.End(e);
                continue;
            }
            Complete(answer);
        }
    }

    /// <summary>The answer's decision after its logits: streams the update and retires the answer when it finished.</summary>
    private static void Complete(ScheduledAnswer answer)
    {
        try
        {
            var update = answer.Run.CompleteNext();
            if (update is null) return;
            answer.Post(update);
            if (update.FinishReason is not null) answer.End(null);
        }
        catch (Exception e)
        {
            answer.End(e);
        }
    }

    /// <summary>True (and the answer ended) when its caller cancelled or went away.</summary>
    private static bool Leaving(ScheduledAnswer answer)
    {
        if (answer.Ended) return true;
        if (answer.Token.IsCancellationRequested) answer.End(new OperationCanceledException(answer.Token));
        else if (answer.Abandoned) answer.End(null);
        return answer.Ended;
    }
}

/// <summary>
/// One answer in a <see cref="DecodeScheduler"/>: the run, its caller's cancellation, and the updates the loop streams to
/// the caller. Once <see cref="Released"/> completes the loop no longer touches the run or its cache.
/// </summary>
internal sealed class ScheduledAnswer(GenerationRun run, ConversationCache conversation, int promptPositions, CancellationToken token)
{
    private readonly Channel<GenerationUpdate> _updates = Channel.CreateUnbounded<GenerationUpdate>(
        new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Exception? _error;
    private volatile bool _abandoned;
    private Action? _wake;
    private int _unread; // the single-reader channel cannot count
    private CancellationTokenRegistration _onCancel;

    /// <summary>
    /// Updates a caller may leave unread before its answer pauses: a slow or stalled reader holds back its own answer
    /// (and keeps its slot, as before batching), not the others and not memory.
    /// </summary>
    public const int MaxUnreadUpdates = 16;

    public GenerationRun Run => run;
    public LanguageModelCache Cache => conversation.Cache;
    public int PromptPositions => promptPositions;
    public CancellationToken Token => token;
    public bool Abandoned => _abandoned;

    /// <summary>True while the caller has <see cref="MaxUnreadUpdates"/> or more updates to read.</summary>
    public bool Backlogged => Volatile.Read(ref _unread) >= MaxUnreadUpdates;

    /// <summary>Called by the scheduler once: <paramref name="wake"/> runs when a read, an abandon or a cancellation may let the answer move.</summary>
    internal void Attach(Action wake)
    {
        _wake = wake;
        _onCancel = token.Register(wake);
    }
    /// <summary>True once the loop let go of the answer (finished, failed, cancelled or abandoned).</summary>
    public bool Ended => _released.Task.IsCompleted;

    /// <summary>Completes when the loop no longer uses the run or the cache.</summary>
    public Task Released => _released.Task;

    /// <summary>The next update, or null after the last; throws what ended the answer (a failure, a cancellation).</summary>
    public async Task<GenerationUpdate?> ReadAsync(CancellationToken cancellationToken)
    {
        while (await _updates.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            if (_updates.Reader.TryRead(out var update))
            {
                Interlocked.Decrement(ref _unread);
                _wake?.Invoke();
                return update;
            }
        if (_error is not null) ExceptionDispatchInfo.Throw(_error);
        return null;
    }

    /// <summary>The caller is gone: the loop drops the answer before its next step.</summary>
    public void Abandon()
    {
        _abandoned = true;
        _wake?.Invoke();
    }

    internal void Post(GenerationUpdate update)
    {
        Interlocked.Increment(ref _unread);
        _updates.Writer.TryWrite(update);
    }

    internal void End(Exception? error)
    {
        if (Ended) return;
        _error = error;
        _onCancel.Dispose();
        _updates.Writer.TryComplete();
        _released.TrySetResult();
    }
}
