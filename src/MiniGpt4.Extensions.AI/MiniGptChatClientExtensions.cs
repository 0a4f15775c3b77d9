using Microsoft.Extensions.AI;

namespace MiniGpt4.Extensions.AI;

/// <summary>Microsoft.Extensions.AI over a <see cref="MiniGptPipeline"/>.</summary>
public static class MiniGptChatClientExtensions
{
    /// <summary>
    /// An <see cref="IChatClient"/> over <paramref name="pipeline"/>: images in <see cref="DataContent"/>, the whole message
    /// list rendered with the variant's template, replayed histories reusing cached keys/values, streaming with usage and
    /// finish reasons. The client does not own the pipeline: disposing the client frees its cached conversations only.
    /// The mapping of <see cref="ChatOptions"/> (with the <c>AdditionalProperties</c> table) and of messages is in the
    /// repository README, section "IChatClient"; the design in docs/chat.md.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="pipeline"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="MiniGptChatClientOptions.MaxCachedConversations"/> is negative.</exception>
    public static IChatClient AsIChatClient(this MiniGptPipeline pipeline, MiniGptChatClientOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(pipeline);
        options ??= new MiniGptChatClientOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.MaxCachedConversations);
        return new MiniGptChatClient(pipeline, options);
    }
}
