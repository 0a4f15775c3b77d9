using System.Diagnostics;
using System.Runtime.CompilerServices;
using MiniGpt4.Abstractions;
using MiniGpt4.Prompting;

namespace MiniGpt4;

/// <summary>
/// A conversation about one or more images, with the reference's semantics: each turn re-renders and
/// re-tokenizes the whole conversation as MiniGPT-4's <c>Chat</c> does, but keys/values already in this
/// session's cache are reused for the longest common token prefix, so only the rest is prefilled.
/// Images are encoded once. Not thread-safe: one turn at a time. Dispose to free the cache and images.
/// </summary>
public sealed class ChatSession : IDisposable
{
    private readonly MiniGptPipeline _pipeline;
    private readonly Conversation _conversation = new();
    private readonly List<ImageEmbeddings> _images = new();
    private readonly LanguageModelCache _cache;
    private double _pendingImageMs;
    private bool _busy, _disposed;

    internal ChatSession(MiniGptPipeline pipeline)
    {
        _pipeline = pipeline;
        _cache = pipeline.LanguageModel.CreateCache();
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
    public void AddImage(ImageInput image, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var sw = Stopwatch.StartNew();
        var embeddings = _pipeline.EncodeImage(image, cancellationToken);
        _images.Add(embeddings);
        _conversation.AddImage();
        _pendingImageMs += sw.Elapsed.TotalMilliseconds;
    }

    /// <summary>Asks a question and returns the whole answer.</summary>
    public async Task<MiniGptResponse> AskAsync(string question, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        await foreach (var _ in StreamAsync(question, options, cancellationToken).ConfigureAwait(false)) { }
        return LastResponse!;
    }

    /// <summary>
    /// Asks a question and streams the answer's text as it is generated (cut at <c>###</c>, like the
    /// answer the reference keeps). <see cref="LastResponse"/> holds the finished answer afterwards.
    /// Cancelling ends the stream early; the partial answer is kept with finish reason Cancelled.
    /// </summary>
    public async IAsyncEnumerable<string> StreamAsync(string question, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(question);
        options ??= new GenerationOptions();
        options.Validate();
        if (_busy) throw new InvalidOperationException("A turn is already running in this chat session.");
        _busy = true;
        var messagesBefore = _conversation.Messages.Count;
        var lastBefore = messagesBefore > 0 ? _conversation.Messages[^1] : null;
        var committed = false;
        try
        {
            _conversation.Ask(question);
            var turn = _pipeline.BuildPrompt(_conversation, _images, options);
            var stream = new AnswerStreamCut(); // what the reference keeps: the text before the first "###"
            var tokens = new List<int>();
            GenerationUpdate? last = null;
            await foreach (var u in _pipeline.LanguageModel.GenerateAsync(turn.Sequence, turn.Options, _cache, cancellationToken).ConfigureAwait(false))
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
            var usage = last!.Usage!;
            var t = last.Timings!;
            LastResponse = new MiniGptResponse
            {
                Text = answer,
                RawText = rawText,
                TokenIds = tokens.ToArray(),
                FinishReason = last.FinishReason!.Value,
                Usage = usage,
                Timings = t with { ImageEncodeMilliseconds = _pendingImageMs },
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
            if (!committed) Rollback(messagesBefore, lastBefore);
            _busy = false;
        }
    }

    private void Rollback(int count, ConversationMessage? lastBefore) => _conversation.Restore(count, lastBefore);

    /// <summary>Frees the cache and the encoded images.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _cache.Dispose();
        foreach (var img in _images) img.Dispose();
        _images.Clear();
    }
}
