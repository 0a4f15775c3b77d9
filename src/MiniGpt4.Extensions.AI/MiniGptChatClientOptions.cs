namespace MiniGpt4.Extensions.AI;

/// <summary>Options of the <see cref="Microsoft.Extensions.AI.IChatClient"/> made by <see cref="MiniGptChatClientExtensions.AsIChatClient"/>.</summary>
public sealed class MiniGptChatClientOptions
{
    /// <summary>
    /// The model id reported in <see cref="Microsoft.Extensions.AI.ChatClientMetadata.DefaultModelId"/> and on responses
    /// (default: the variant's name, e.g. <c>minigpt4-vicuna0</c>). A request whose <c>ChatOptions.ModelId</c> names
    /// another model is refused.
    /// </summary>
    public string? ModelId { get; set; }

    /// <summary>
    /// Accept <see cref="Microsoft.Extensions.AI.UriContent"/> images with a <c>file:</c> URI, read from the local disk
    /// (default false: a client could otherwise make the service read any file it can). Other URI schemes are always
    /// refused; nothing is ever downloaded.
    /// </summary>
    public bool AllowFileUris { get; set; }

    /// <summary>
    /// Conversations kept after their request for key/value cache reuse by later requests that replay them (default 4;
    /// 0 keeps none). Their caches also count against the pipeline's memory budget and are evicted first when a request
    /// needs the room.
    /// </summary>
    public int MaxCachedConversations { get; set; } = 4;
}
