using System.Security.Cryptography;
using Microsoft.Extensions.AI;

namespace MiniGpt4.Extensions.AI;

/// <summary>One turn of a request with the content keys of its images (for finding a cached conversation to reuse).</summary>
internal sealed record MappedTurn(ChatTurn Turn, IReadOnlyList<string> ImageKeys);

/// <summary>A request's messages as the core sees them: the system text, the earlier turns and the user turn to answer.</summary>
internal sealed record MappedConversation(string? SystemPrompt, IReadOnlyList<MappedTurn> History, MappedTurn Question)
{
    /// <summary>What identifies the conversation up to and including each turn: the system text, then one entry per turn.</summary>
    public IReadOnlyList<string> Signature()
    {
        var list = new List<string> { "system:" + (SystemPrompt ?? "\0") };
        foreach (var t in History.Append(Question)) list.Add(TurnSignature(t.Turn.IsUser, t.Turn.Text, t.ImageKeys));
        return list;
    }

    public static string TurnSignature(bool isUser, string text, IReadOnlyList<string> imageKeys) =>
        $"{(isUser ? "user" : "assistant")}:{string.Join(",", imageKeys)}:{text}";
}

/// <summary>
/// Maps Microsoft.Extensions.AI messages to turns. System messages (and <see cref="ChatOptions.Instructions"/>) become the
/// system prompt, joined with a newline in order; user messages become user turns (their images first, then their text,
/// as the reference's chat always orders them); assistant messages become assistant turns. What the model cannot use is
/// refused with <see cref="NotSupportedException"/>, never dropped.
/// </summary>
internal static class MessageMapper
{
    public static MappedConversation Map(IEnumerable<ChatMessage> messages, string? instructions, bool allowFileUris)
    {
        ArgumentNullException.ThrowIfNull(messages);
        var system = new List<string>();
        var turns = new List<MappedTurn>();
        foreach (var message in messages)
        {
            if (message is null) throw new ArgumentException("A message is null.", nameof(messages));
            if (message.Role == ChatRole.System) system.Add(TextOf(message, "system"));
            else if (message.Role == ChatRole.Assistant) turns.Add(new MappedTurn(ChatTurn.Assistant(TextOf(message, "assistant")), []));
            else if (message.Role == ChatRole.User) turns.Add(UserTurn(message, allowFileUris));
            else throw new NotSupportedException($"MiniGpt4 cannot use a message of role '{message.Role}' (only system, user and assistant; tools are not supported).");
        }
        if (!string.IsNullOrEmpty(instructions)) system.Add(instructions);
        if (turns.Count == 0 || !turns[^1].Turn.IsUser)
            throw new ArgumentException("The last message must be a user message: it is the question the model answers.", nameof(messages));
        var question = turns[^1];
        if (question.Turn.Text.Length == 0 && question.Turn.Images.Count == 0)
            throw new ArgumentException("The last user message has neither text nor an image.", nameof(messages));
        turns.RemoveAt(turns.Count - 1);
        return new MappedConversation(system.Count > 0 ? string.Join("\n", system) : null, turns, question);
    }

    private static string TextOf(ChatMessage message, string role)
    {
        var text = new System.Text.StringBuilder();
        foreach (var content in message.Contents)
        {
            switch (content)
            {
                case TextContent t: text.Append(t.Text); break;
                case UsageContent: break; // accounting of an earlier response, not content
                default: throw Unsupported(content, role);
            }
        }
        return text.ToString();
    }

    private static MappedTurn UserTurn(ChatMessage message, bool allowFileUris)
    {
        var text = new System.Text.StringBuilder();
        var images = new List<ImageInput>();
        var keys = new List<string>();
        foreach (var content in message.Contents)
        {
            switch (content)
            {
                case TextContent t:
                    text.Append(t.Text);
                    break;
                case DataContent d when d.HasTopLevelMediaType("image"):
                    images.Add(ImageInput.FromBytes(d.Data));
                    keys.Add(Convert.ToHexString(SHA256.HashData(d.Data.Span)));
                    break;
                case UriContent u when u.HasTopLevelMediaType("image") && u.Uri.IsAbsoluteUri && u.Uri.IsFile:
                    if (!allowFileUris)
                        throw new NotSupportedException($"A file: image URI ({u.Uri}) is refused: set MiniGptChatClientOptions.AllowFileUris to read images from the local disk.");
                    var bytes = File.ReadAllBytes(u.Uri.LocalPath);
                    images.Add(ImageInput.FromBytes(bytes));
                    keys.Add(Convert.ToHexString(SHA256.HashData(bytes)));
                    break;
                case UriContent u:
                    throw new NotSupportedException($"MiniGpt4 reads images from DataContent (bytes or a data: URI){(allowFileUris ? " or file: URIs" : "")}; it never downloads, so {u.Uri.Scheme}: URI content ({u.MediaType}) is refused.");
                default:
                    throw Unsupported(content, "user");
            }
        }
        return new MappedTurn(ChatTurn.User(text.ToString(), images), keys);
    }

    private static NotSupportedException Unsupported(AIContent content, string role) => content switch
    {
        DataContent d => new NotSupportedException($"MiniGpt4 sees images only; {role} content of media type '{d.MediaType}' is refused."),
        FunctionCallContent or FunctionResultContent => new NotSupportedException("MiniGpt4 does not support tool calls."),
        _ => new NotSupportedException($"MiniGpt4 cannot use {content.GetType().Name} in a {role} message (text{(role == "user" ? " and images" : "")} only)."),
    };
}
