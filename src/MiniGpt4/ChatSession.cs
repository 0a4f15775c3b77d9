using System.Diagnostics;
using System.Runtime.CompilerServices;
using MiniGpt4.Abstractions;
using MiniGpt4.Generation;
using MiniGpt4.Prompting;
using MiniGpt4.Sessions;

namespace MiniGpt4;

/// <summary>
/// A conversation about one or more images, with the reference's semantics: each turn re-renders and
/// re-tokenizes the whole conversation as MiniGPT-4's <c>Chat</c> does, but keys/values already in this
/// session's cache are reused for the longest common token prefix, so only the rest is prefilled.
/// Images are encoded once. One turn at a time. Each turn is admitted by the pipeline (a slot and its
/// memory); between turns the cache may be evicted to make room for other requests, which costs a longer
/// prefill next turn but never changes an answer. A session can start from a system prompt and earlier turns
/// (<see cref="MiniGptPipeline.CreateSessionAsync"/>, <see cref="ReplaceHistoryAsync"/>), and can be saved to a
/// stream and restored on the same model (<see cref="SaveAsync"/>, <see cref="MiniGptPipeline.RestoreSessionAsync"/>).
/// Dispose to free the cache and images.
/// </summary>
public sealed class ChatSession : IDisposable
{
    private readonly MiniGptPipeline _pipeline;
    private readonly Conversation _conversation = new();
    private List<ImageEmbeddings> _images = new();
    private List<byte[]?> _imageKeys = new();
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

    /// <summary>The system text the prompt starts with: the variant template's own unless one was given.</summary>
    public string SystemPrompt => _conversation.SystemPrompt ?? _pipeline.Preset.Template.System;

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
            var key = ImageContentKey.Of(image);
            var embeddings = await _pipeline.EncodeImageAsync(image, key, cancellationToken).ConfigureAwait(false);
            _images.Add(embeddings);
            _imageKeys.Add(key);
            _conversation.AddImage();
            _pendingImageMs += sw.Elapsed.TotalMilliseconds;
        }
        finally { ExitTurn(); }
    }

    /// <summary>
    /// Replaces the conversation with <paramref name="history"/> after <paramref name="systemPrompt"/> (null: the variant
    /// template's own), rendered exactly as the same turns asked live would be. Images this session already holds with the
    /// same content (bytes, or RGB pixels and size) are not encoded again, and the next answer reuses the cached keys/values
    /// of the longest common token prefix of the old and new prompts: replaying a history that extends this session's
    /// prefills only the new tokens. Nothing is generated; call <see cref="AskAsync"/> or <see cref="StreamUpdatesAsync"/> next.
    /// </summary>
    /// <exception cref="MiniGptImageException">An image cannot be decoded or is refused; the session is unchanged.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; the session is unchanged.</exception>
    /// <exception cref="ArgumentException">A turn is null, or an assistant turn holds images.</exception>
    public async Task ReplaceHistoryAsync(string? systemPrompt, IEnumerable<ChatTurn> history, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(history);
        var turns = history.ToArray();
        if (turns.Any(t => t is null)) throw new ArgumentException("A turn is null.", nameof(history));
        EnterTurn();
        var encoded = new List<ImageEmbeddings>();
        try
        {
            var sw = Stopwatch.StartNew();
            var claimed = new bool[_images.Count];
            var images = new List<ImageEmbeddings>();
            var keys = new List<byte[]?>();
            foreach (var input in turns.SelectMany(t => t.Images))
            {
                var key = ImageContentKey.Of(input);
                var reuse = key is null ? -1 : Enumerable.Range(0, _images.Count)
                    .FirstOrDefault(i => !claimed[i] && _imageKeys[i] is { } k && k.AsSpan().SequenceEqual(key), -1);
                if (reuse >= 0)
                {
                    claimed[reuse] = true;
                    images.Add(_images[reuse]);
                }
                else
                {
                    var embeddings = await _pipeline.EncodeImageAsync(input, key, cancellationToken).ConfigureAwait(false);
                    encoded.Add(embeddings);
                    images.Add(embeddings);
                }
                keys.Add(key);
            }
            // Committed from here on: nothing below throws.
            _conversation.Clear();
            _conversation.SystemPrompt = systemPrompt;
            foreach (var turn in turns) _conversation.AddTurn(turn.IsUser, turn.Text, turn.Images.Count);
            for (var i = 0; i < _images.Count; i++)
                if (!claimed[i]) _images[i].Dispose();
            _images = images;
            _imageKeys = keys;
            encoded.Clear();
            _pendingImageMs += sw.Elapsed.TotalMilliseconds;
        }
        finally
        {
            foreach (var e in encoded) e.Dispose();
            ExitTurn();
        }
    }

    /// <summary>Asks a question and returns the whole answer.</summary>
    /// <exception cref="OperationCanceledException">Cancelled: the history and the cache stay as they were.</exception>
    /// <exception cref="MiniGptContextLengthException">The conversation plus MaxNewTokens does not fit the context.</exception>
    /// <exception cref="MiniGptQueueFullException">Too many requests are waiting.</exception>
    public async Task<MiniGptResponse> AskAsync(string question, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        await foreach (var _ in RunTurnAsync(question, options, clean: false, cancellationToken).ConfigureAwait(false)) { }
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
        await foreach (var u in RunTurnAsync(question, options, clean: false, cancellationToken).ConfigureAwait(false))
            if (u.Text.Length > 0) yield return u.Text;
    }

    /// <summary>
    /// Asks a question and streams the answer with its accounting: one update per generated token (per beam search, one
    /// at the end) with the new text and token ids; the last update carries the <see cref="GenerationUpdate.FinishReason"/>,
    /// the <see cref="GenerationUpdate.Usage"/> (prompt, generated and image tokens, and how many prompt positions came from
    /// the cache) and the <see cref="GenerationUpdate.Timings"/>. The texts concatenate to the answer's
    /// <see cref="MiniGptResponse.Text"/> (the reference's clean-up, applied as the text streams), with one exception: a
    /// model that writes <c>Assistant:</c> after text was streamed (the reference keeps only what follows it; a stream
    /// cannot take text back). Cancellation and failures undo the turn as in <see cref="StreamAsync"/>.
    /// </summary>
    /// <exception cref="OperationCanceledException">Cancelled: the history and the cache stay as they were.</exception>
    /// <exception cref="MiniGptContextLengthException">The conversation plus MaxNewTokens does not fit the context.</exception>
    /// <exception cref="MiniGptQueueFullException">Too many requests are waiting.</exception>
    public IAsyncEnumerable<GenerationUpdate> StreamUpdatesAsync(string question, GenerationOptions? options = null,
        CancellationToken cancellationToken = default)
        => RunTurnAsync(question, options, clean: true, cancellationToken);

    /// <summary>One turn: texts are <see cref="AnswerStreamCut"/>'s deltas, or with <paramref name="clean"/> <see cref="AnswerStreamClean"/>'s.</summary>
    private async IAsyncEnumerable<GenerationUpdate> RunTurnAsync(string question, GenerationOptions? options, bool clean,
        [EnumeratorCancellation] CancellationToken cancellationToken)
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
            var cleaned = clean ? new AnswerStreamClean() : null;
            var tokens = new List<int>();
            GenerationUpdate? last = null;
            var lastDelta = "";
            await foreach (var u in _pipeline.Engine.GenerateAsync(turn.Sequence, turn.Options, _cache, cancellationToken).ConfigureAwait(false))
            {
                tokens.AddRange(u.TokenIds);
                last = u;
                var delta = stream.Push(u.Text);
                if (u.FinishReason is not null)
                {
                    lastDelta = delta; // the last update: sent below, once the answer is committed
                    break;
                }
                if (cleaned is not null) yield return new GenerationUpdate(cleaned.Push(delta), u.TokenIds);
                else if (delta.Length > 0) yield return new GenerationUpdate(delta, u.TokenIds);
            }
            var rawText = stream.Raw;
            var answer = AnswerPostProcessor.Process(rawText);
            _conversation.AddAnswer(answer);
            committed = true;
            var timings = last!.Timings! with { ImageEncodeMilliseconds = _pendingImageMs };
            LastResponse = new MiniGptResponse
            {
                Text = answer,
                RawText = rawText,
                TokenIds = tokens.ToArray(),
                FinishReason = last.FinishReason!.Value,
                Usage = last.Usage!,
                Timings = timings,
                Prompt = turn.Prompt,
                SegmentIds = turn.SegmentIds,
                SequenceScore = last.SequenceScore,
            };
            _pendingImageMs = 0;
            var tail = stream.Finish();
            if (cleaned is not null)
            {
                var text = cleaned.Push(lastDelta) + cleaned.Push(tail) + cleaned.Finish(answer);
                yield return last with { Text = text, Timings = timings };
            }
            else if (lastDelta.Length + tail.Length > 0) yield return new GenerationUpdate(lastDelta + tail, last.TokenIds);
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

    /// <summary>
    /// Saves the conversation to <paramref name="destination"/>: the system prompt, the messages, each image's embeddings
    /// (so the images are not needed again) and the key/value cache with the keys of its positions, bound to this model's
    /// identity. <see cref="MiniGptPipeline.RestoreSessionAsync"/> on the same model (in this process or another) continues
    /// with the same tokens as this session would. The format is described in docs/chat.md. <see cref="LastResponse"/> is not saved.
    /// </summary>
    /// <exception cref="OperationCanceledException">Cancelled; what was written is incomplete.</exception>
    /// <exception cref="InvalidOperationException">A turn is running.</exception>
    public async Task SaveAsync(Stream destination, CancellationToken cancellationToken = default)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(destination);
        if (!destination.CanWrite) throw new ArgumentException("The stream is not writable.", nameof(destination));
        EnterTurn();
        try
        {
            var identity = _pipeline.Identity;
            _pipeline.Admission.Forget(_cache); // not evicted while it is copied
            try
            {
                await Task.Run(() =>
                {
                    var exported = _cache.Export();
                    try
                    {
                        SessionFile.Write(destination, identity, _conversation.SystemPrompt, _conversation.Messages,
                            _images.Zip(_imageKeys).ToArray(), exported, cancellationToken);
                    }
                    finally { exported?.Snapshot.Dispose(); }
                }, cancellationToken).ConfigureAwait(false);
            }
            finally
            {
                if (!_disposed) _pipeline.Admission.MarkIdle(_cache);
            }
            await destination.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        finally { ExitTurn(); }
    }

    /// <summary>A session from a saved conversation (see <see cref="MiniGptPipeline.RestoreSessionAsync"/>).</summary>
    internal static async Task<ChatSession> RestoreAsync(MiniGptPipeline pipeline, Stream source, CancellationToken cancellationToken)
    {
        var identity = pipeline.Identity;
        using var saved = await Task.Run(() => SessionFile.Read(source, pipeline, identity, cancellationToken), cancellationToken).ConfigureAwait(false);
        var session = new ChatSession(pipeline);
        try
        {
            session._conversation.SystemPrompt = saved.SystemPrompt;
            foreach (var m in saved.Messages) session._conversation.Add(m);
            foreach (var image in saved.Images)
            {
                session._images.Add(ImageEmbeddings.FromArray(image.Values, image.Tokens, image.Hidden));
                session._imageKeys.Add(image.Key);
            }
            if (saved is { Cache: { } snapshot, CacheKeys: { } savedKeys })
            {
                var keys = savedKeys.Select(k => k >= 0 ? k
                    : GenerationRun.ImageKey(session._images[(int)((-k - 1) / 1_000_000L)], (int)((-k - 1) % 1_000_000L))).ToArray();
                using var lease = await pipeline.Admission.AdmitAsync(pipeline.LanguageModel.CacheBytesPerPosition * keys.Length,
                    "Restoring a conversation", cancellationToken).ConfigureAwait(false);
                await Task.Run(() => session._cache.Import(keys, snapshot), cancellationToken).ConfigureAwait(false);
                pipeline.Admission.MarkIdle(session._cache);
            }
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
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
