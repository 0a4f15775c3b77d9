using System.Diagnostics;
using System.Runtime.CompilerServices;
using MiniGpt4.Abstractions;
using MiniGpt4.Generation;
using MiniGpt4.Prompting;

namespace MiniGpt4;

/// <summary>
/// A conversation about one or more images, with the reference's semantics: each turn re-renders and
/// re-tokenizes the whole conversation as MiniGPT-4's <c>Chat</c> does, but keys/values already in this
/// session's cache are reused for the longest common token prefix, so only the rest is prefilled.
/// Images are encoded once. One turn at a time. Each turn is admitted by the pipeline (a slot and its
/// memory); between turns the cache may be evicted to make room for other requests, which costs a longer
/// prefill next turn but never changes an answer. Dispose to free the cache and images.
/// </summary>
public sealed class ChatSession : IDisposable
{
    private readonly MiniGptPipeline _pipeline;
    private readonly Conversation _conversation = new();
    private readonly List<ImageEmbeddings> _images = new();
    private readonly ConversationCache _cache;
    private double _pendingImageMs;
    private int _busy;
    private bool _disposed;

    internal ChatSession(MiniGptPipeline pipeline)
    {
        _pipeline = pipeline;
        _cache = pipeline.Engine.CreateCache();
    }

    /// <summary>The messages so far as (role, text): role is <c>user</c> or <c>assistant</c>.</summary>
    public IReadOnlyList<(string Role, string Text)> History =>
        _conversation.Messages.Select(m => (m.IsUser ? "user" : "assistant", m.Text)).ToArray();

    /// <summary>The last finished answer, also after streaming.</summary>
    public MiniGptResponse? LastResponse { get; private set; }

    /// <summary>Positions held by the session's key/value cache.</summary>
    public int CachedTokens => _cache.Length;


    /// <summary>Adds an image to the conversation (<c>Chat.upload_img</c> + <c>encode_img</c>): it is encoded now, once.</summary>
    /// <exception cref="MiniGptImageException">The image cannot be decoded or is refused; the session is unchanged.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the session is unchanged.</exception>
    public void AddImage(ImageInput image, CancellationToken cancellationToken = default)
        => AddImageAsync(image, cancellationToken).GetAwaiter().GetResult();

    /// <summary>Adds an image to the conversation; it is decoded and encoded now, inside the pipeline's admission.</summary>
    /// <exception cref="MiniGptImageException">The image cannot be decoded or is refused; the session is unchanged.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the session is unchanged.</exception>
    public async Task AddImageAsync(ImageInput image, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(image);
        EnterTurn();
        try
        {
            var sw = Stopwatch.StartNew();
            var embeddings = await _pipeline.EncodeImageAsync(image, cancellationToken).ConfigureAwait(false);
            _images.Add(embeddings);
            _conversation.AddImage();
            _pendingImageMs += sw.Elapsed.TotalMilliseconds;
        }
        finally { ExitTurn(); }
    }

    /// <summary>Asks a question and returns the whole answer.</summary>
    /// <exception cref="OperationCanceledException">Cancelled: the history and the cache stay as they were.</exception>
    /// <exception cref="MiniGptContextLengthException">The conversation plus MaxNewTokens does not fit the context.</exception>
    /// <exception cref="MiniGptQueueFullException">Too many requests are waiting.</exception>
    public async Task<MiniGptResponse> AskAsync(string question, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        await foreach (var _ in StreamAsync(question, options, cancellationToken).ConfigureAwait(false)) { }
        return LastResponse!;
    }

    /// <summary>
    /// Asks a question and streams the answer's text as it is generated (cut at <c>###</c>, like the
    /// answer the reference keeps). <see cref="LastResponse"/> holds the finished answer afterwards.
    /// Cancelling throws <see cref="OperationCanceledException"/> within one decoding step; the turn is
    /// then undone (history and cache as before). A stream that is dropped unread holds no lock.
    /// </summary>
    public async IAsyncEnumerable<string> StreamAsync(string question, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(question);
        options ??= _pipeline.Preset.Defaults;
        options.Validate();
        EnterTurn();
        var messagesBefore = _conversation.Messages.Count;
        var lastBefore = messagesBefore > 0 ? _conversation.Messages[^1] : null;
        var committed = false;
        AdmissionLease? lease = null;
        try
        {
            _conversation.Ask(question);
            var turn = _pipeline.Prompts.Build(_conversation, _images, options);
            var positions = turn.Sequence.Length - turn.Sequence.SkipLeft;
            lease = await _pipeline.Admission.AdmitAsync(_pipeline.EstimateAnswerBytes(positions, options), "This answer", cancellationToken).ConfigureAwait(false);
            _pipeline.Admission.Forget(_cache);
            var stream = new AnswerStreamCut(); // what the reference keeps: the text before the first "###"
            var tokens = new List<int>();
            GenerationUpdate? last = null;
            await foreach (var u in _pipeline.Engine.GenerateAsync(turn.Sequence, turn.Options, _cache, cancellationToken).ConfigureAwait(false))
            {
                tokens.AddRange(u.TokenIds);
                last = u;
                var delta = stream.Push(u.Text);
                if (delta.Length > 0) yield return delta;
            }
            var rawText = stream.Raw;
            var answer = AnswerPostProcessor.Process(rawText);
            _conversation.AddAnswer(answer);
            committed = true;
            LastResponse = new MiniGptResponse
            {
                Text = answer,
                RawText = rawText,
                TokenIds = tokens.ToArray(),
                FinishReason = last!.FinishReason!.Value,
                Usage = last.Usage!,
                Timings = last.Timings! with { ImageEncodeMilliseconds = _pendingImageMs },
                Prompt = turn.Prompt,
                SegmentIds = turn.SegmentIds,
                SequenceScore = last.SequenceScore,
            };
            _pendingImageMs = 0;
            var tail = stream.Finish();
            if (tail.Length > 0) yield return tail;
        }
        finally
        {
            if (!committed) _conversation.Restore(messagesBefore, lastBefore);
            if (lease is not null)
            {
                if (!_disposed) _pipeline.Admission.MarkIdle(_cache);
                lease.Dispose();
            }
            ExitTurn();
        }
    }

    private void EnterTurn()
    {
        if (Interlocked.Exchange(ref _busy, 1) != 0)
            throw new InvalidOperationException("A turn is already running in this chat session (one turn at a time).");
    }

    private void ExitTurn() => Volatile.Write(ref _busy, 0);

    private void ThrowIfDisposed()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ObjectDisposedException.ThrowIf(_pipeline.IsDisposed, _pipeline);
    }

    /// <summary>Frees the cache and the encoded images. A second call does nothing.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _pipeline.Admission.Forget(_cache);
        _cache.Dispose();
        foreach (var img in _images) img.Dispose();
        _images.Clear();
    }
}
