using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using MiniGpt4.Abstractions;

namespace MiniGpt4.Extensions.AI;

/// <summary>
/// <see cref="IChatClient"/> over a <see cref="MiniGptPipeline"/> (see <see cref="MiniGptChatClientExtensions.AsIChatClient"/>).
/// Stateless per request: the messages are the conversation. A request leases a cached conversation from a
/// <see cref="ConversationPool"/>, replaces its history with the request's, answers the last user message, and returns it.
/// The non-streaming response is the streamed updates put together (<see cref="ChatResponseExtensions.ToChatResponseAsync"/>),
/// so the two are the same by construction.
/// </summary>
internal sealed class MiniGptChatClient : IChatClient
{
    private const string ProviderName = "minigpt4";
    private readonly MiniGptPipeline _pipeline;
    private readonly MiniGptChatClientOptions _options;
    private readonly ConversationPool _pool;
    private readonly ChatClientMetadata _metadata;

    public MiniGptChatClient(MiniGptPipeline pipeline, MiniGptChatClientOptions options)
    {
        _pipeline = pipeline;
        _options = options;
        _pool = new ConversationPool(options.MaxCachedConversations);
        _metadata = new ChatClientMetadata(ProviderName, providerUri: null, defaultModelId: options.ModelId ?? pipeline.ModelName);
    }

    private string ModelId => _metadata.DefaultModelId!;

    /// <summary>Cached conversations held now (tests).</summary>
    internal int CachedConversations => _pool.Count;

    public Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        => GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    public async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        // Everything that can be refused is refused before anything runs.
        var generation = OptionsMapper.Map(options, this, _pipeline, ModelId);
        var conversation = MessageMapper.Map(messages, options?.Instructions, _options.AllowFileUris);
        var signature = conversation.Signature();
        var responseId = "minigpt4-" + Guid.NewGuid().ToString("N");
        var messageId = "msg-" + Guid.NewGuid().ToString("N");
        var createdAt = DateTimeOffset.UtcNow;

        var entry = _pool.Rent(signature) ?? new ConversationPool.Entry(_pipeline.CreateSession());
        var returned = false;
        try
        {
            var session = entry.Session;
            var question = conversation.Question.Turn;
            // The question's images are uploaded first (image messages), then its text is asked, as a live session does.
            var history = conversation.History.Select(t => t.Turn);
            if (question.Images.Count > 0) history = history.Append(ChatTurn.User("", question.Images));
            await session.ReplaceHistoryAsync(conversation.SystemPrompt, history, cancellationToken).ConfigureAwait(false);
            // Tokens whose text is held back (a partial character, a possible stop string) send no update of their own:
            // each update's RawRepresentation lists the library's GenerationUpdates it covers, so no token id is lost.
            var covered = new List<GenerationUpdate>();
            ChatResponseUpdate? last = null;
            await foreach (var u in session.StreamUpdatesAsync(question.Text, generation, cancellationToken).ConfigureAwait(false))
            {
                covered.Add(u);
                if (u.FinishReason is not { } finish)
                {
                    if (u.Text.Length == 0) continue;
                    yield return Update(new List<AIContent> { new TextContent(u.Text) }, covered.ToArray());
                    covered.Clear();
                    continue;
                }
                var contents = new List<AIContent>();
                if (u.Text.Length > 0) contents.Add(new TextContent(u.Text));
                contents.Add(new UsageContent(Usage(u.Usage!)));
                last = Update(contents, covered.ToArray());
                last.FinishReason = finish == MiniGptFinishReason.Length ? ChatFinishReason.Length : ChatFinishReason.Stop;
                // MiniGPT-v2's boxes, in pixels of the conversation's last image (the one a grounding question is about).
                var image = _pipeline.Variant != ModelVariant.MiniGptV2 ? null
                    : conversation.Question.Turn.Images.LastOrDefault() ?? conversation.History.SelectMany(t => t.Turn.Images).LastOrDefault();
                if (Grounding(_pipeline.Variant, session.LastResponse!.Text, image is null ? null : _pipeline.GetImageSize(image)) is { } boxes)
                    last.AdditionalProperties = new() { [MiniGptChatClientExtensions.GroundingBoxesKey] = boxes };
                break; // the answer is committed: leaving the loop ends the session's turn before it goes back to the pool
            }
            // The conversation now holds the request plus this answer: put it back for the next request that replays it.
            entry.Signature = [.. signature, MappedConversation.TurnSignature(false, session.LastResponse!.Text, [])];
            _pool.Return(entry);
            returned = true;
            yield return last!;
        }
        finally
        {
            if (!returned) entry.Session.Dispose(); // failed or cancelled: its state is not what the signature says
        }

        ChatResponseUpdate Update(IList<AIContent> contents, object raw) => new(ChatRole.Assistant, contents)
        {
            ResponseId = responseId,
            MessageId = messageId,
            CreatedAt = createdAt,
            ModelId = ModelId,
            RawRepresentation = raw,
        };
    }

    /// <summary>
    /// The grounding boxes of <paramref name="answer"/> for <see cref="MiniGptChatClientExtensions.GroundingBoxesKey"/>: only
    /// MiniGPT-v2 writes them, and only an answer about an image (of <paramref name="imageSize"/> pixels) can have them.
    /// </summary>
    internal static IReadOnlyList<MiniGptGroundingBox>? Grounding(ModelVariant variant, string answer, (int Width, int Height)? imageSize)
        => variant == ModelVariant.MiniGptV2 && imageSize is var (width, height) ? MiniGptGrounding.Parse(answer, width, height) : null;

    /// <summary>Usage in M.E.AI's terms; image positions are in <c>AdditionalCounts["InputImageTokenCount"]</c>.</summary>
    private static UsageDetails Usage(MiniGptUsage usage) => new()
    {
        InputTokenCount = usage.PromptTokens,
        OutputTokenCount = usage.GeneratedTokens,
        TotalTokenCount = usage.PromptTokens + usage.GeneratedTokens,
        CachedInputTokenCount = usage.ReusedPromptTokens,
        AdditionalCounts = new AdditionalPropertiesDictionary<long> { ["InputImageTokenCount"] = usage.ImagePromptTokens },
    };

    public object? GetService(Type serviceType, object? serviceKey = null)
    {
        ArgumentNullException.ThrowIfNull(serviceType);
        if (serviceKey is not null) return null;
        if (serviceType == typeof(ChatClientMetadata)) return _metadata;
        if (serviceType == typeof(MiniGptPipeline)) return _pipeline;
        return serviceType.IsInstanceOfType(this) ? this : null;
    }

    /// <summary>Frees the cached conversations (not the pipeline).</summary>
    public void Dispose() => _pool.Dispose();
}
