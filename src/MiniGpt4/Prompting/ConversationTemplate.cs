namespace MiniGpt4.Prompting;

/// <summary>
/// A MiniGPT conversation template (the reference's <c>Conversation</c> with <c>SeparatorStyle.SINGLE</c>):
/// <c>system + sep</c>, then per message <c>role + text + sep</c>, and the open assistant slot as the bare role.
/// </summary>
internal sealed record ConversationTemplate(string System, string UserRole, string AssistantRole, string Separator)
{
    /// <summary>The literal placeholder where image embeddings are spliced in.</summary>
    public const string ImagePlaceholder = "<ImageHere>";

    /// <summary>The user message an uploaded image becomes (<c>Chat.upload_img</c>).</summary>
    public const string ImageMessage = "<Img><ImageHere></Img>";

    private const string MiniGpt4System =
        "Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it to you. Please answer my questions.";

    /// <summary><c>CONV_VISION_Vicuna0</c> (MiniGPT-4 with Vicuna v0).</summary>
    public static ConversationTemplate Vicuna0 { get; } = new(MiniGpt4System, "Human: ", "Assistant: ", "###");

    /// <summary><c>CONV_VISION_LLama2</c> (MiniGPT-4 with Llama-2).</summary>
    public static ConversationTemplate Llama2 { get; } = new(MiniGpt4System, "<s>[INST] ", " [/INST] ", "");

    /// <summary><c>CONV_VISION_minigptv2</c>.</summary>
    public static ConversationTemplate MiniGptV2 { get; } = new("", "<s>[INST] ", " [/INST]", "");

    /// <summary>
    /// Renders the messages (user, assistant, user, ...) followed by the open assistant slot, as
    /// <c>Conversation.get_prompt()</c> does after <c>Chat.answer</c> appends it, and gives the offsets
    /// of the image placeholders that stand for images. A user's text that happens to contain
    /// <c>&lt;ImageHere&gt;</c> is plain text: only an image message's own placeholder marks where embeddings go.
    /// A <paramref name="systemPrompt"/> takes the place of the template's own system text (<c>system + sep</c> at the start).
    /// </summary>
    public string Render(IReadOnlyList<ConversationMessage> messages, out IReadOnlyList<int> imageOffsets, string? systemPrompt = null)
    {
        var offsets = new List<int>();
        var sb = new System.Text.StringBuilder(systemPrompt ?? System).Append(Separator);
        foreach (var m in messages)
        {
            sb.Append(m.IsUser ? UserRole : AssistantRole);
            if (string.IsNullOrEmpty(m.Text)) continue;
            if (m.HasImage) offsets.Add(sb.Length + ImageMessage.IndexOf(ImagePlaceholder, StringComparison.Ordinal));
            sb.Append(m.Text).Append(Separator);
        }
        imageOffsets = offsets;
        return sb.Append(AssistantRole).ToString();
    }

    /// <summary>Splits a rendered prompt at the given image placeholder offsets: images + 1 text segments.</summary>
    public static IReadOnlyList<string> SplitAtImages(string prompt, IReadOnlyList<int> imageOffsets)
    {
        var segments = new List<string>(imageOffsets.Count + 1);
        var from = 0;
        foreach (var at in imageOffsets)
        {
            segments.Add(prompt[from..at]);
            from = at + ImagePlaceholder.Length;
        }
        segments.Add(prompt[from..]);
        return segments;
    }
}

/// <summary>One message of a conversation; <paramref name="HasImage"/>: it starts with an image's <c>&lt;Img&gt;&lt;ImageHere&gt;&lt;/Img&gt;</c>.</summary>
internal sealed record ConversationMessage(bool IsUser, string Text, bool HasImage = false);

/// <summary>The chat state of the reference's <c>Chat</c>: image uploads and questions.</summary>
internal sealed class Conversation
{
    private readonly List<ConversationMessage> _messages = new();

    /// <summary>Messages so far (without the open assistant slot).</summary>
    public IReadOnlyList<ConversationMessage> Messages => _messages;

    /// <summary>The system text in place of the template's (null: the template's own).</summary>
    public string? SystemPrompt { get; set; }

    /// <summary>
    /// Replays one earlier turn the way a live session would have produced it: a user turn is each image's upload
    /// (<see cref="AddImage"/>) and then its text (<see cref="Ask"/>, joined to the last image message); an assistant
    /// turn is <see cref="AddAnswer"/>. A user turn without text leaves the image messages open for the next text.
    /// </summary>
    public void AddTurn(bool isUser, string text, int images)
    {
        if (!isUser)
        {
            AddAnswer(text);
            return;
        }
        for (var i = 0; i < images; i++) AddImage();
        if (text.Length > 0 || images == 0) Ask(text);
    }

    /// <summary>Appends a message as it was (a restored conversation).</summary>
    public void Add(ConversationMessage message) => _messages.Add(message);

    /// <summary>Drops every message (a history about to be replaced).</summary>
    public void Clear() => _messages.Clear();

    /// <summary><c>Chat.upload_img</c>: a user message holding the image placeholder.</summary>
    public void AddImage() => _messages.Add(new ConversationMessage(true, ConversationTemplate.ImageMessage, HasImage: true));

    /// <summary>
    /// <c>Chat.ask</c>: a question after an image message is joined to it with one space;
    /// otherwise it becomes a new user message.
    /// </summary>
    public void Ask(string text)
    {
        if (_messages.Count > 0 && _messages[^1] is { IsUser: true } last && last.Text.EndsWith("</Img>", StringComparison.Ordinal))
            _messages[^1] = last with { Text = last.Text + " " + text };
        else
            _messages.Add(new ConversationMessage(true, text));
    }

    /// <summary>Stores the post-processed answer in the assistant slot (it is re-rendered next turn).</summary>
    public void AddAnswer(string answer) => _messages.Add(new ConversationMessage(false, answer));

    /// <summary>Undoes a failed turn: keeps the first <paramref name="count"/> messages and restores the last one.</summary>
    public void Restore(int count, ConversationMessage? last)
    {
        if (_messages.Count > count) _messages.RemoveRange(count, _messages.Count - count);
        if (last is not null && _messages.Count > 0) _messages[^1] = last;
    }
}
