namespace MiniGpt4;

/// <summary>
/// One earlier turn of a conversation, for <see cref="MiniGptPipeline.CreateSessionAsync"/> and
/// <see cref="ChatSession.ReplaceHistoryAsync"/>: a user turn (its images, then its text) or an assistant turn
/// (the answer as it was given). Replayed turns are rendered exactly as a live <see cref="ChatSession"/> renders
/// the same <see cref="ChatSession.AddImageAsync"/> and <see cref="ChatSession.AskAsync"/> calls.
/// </summary>
public sealed class ChatTurn
{
    private ChatTurn(bool isUser, string text, IReadOnlyList<ImageInput> images)
    {
        IsUser = isUser;
        Text = text;
        Images = images;
    }

    /// <summary>A user turn: the images are added first (each as the reference's image message), then the text is asked.</summary>
    /// <param name="text">The question (may be empty when the turn only adds images).</param>
    /// <param name="images">The turn's images, in order.</param>
    /// <exception cref="ArgumentNullException">The text or an image is null.</exception>
    public static ChatTurn User(string text, params IEnumerable<ImageInput> images)
    {
        ArgumentNullException.ThrowIfNull(text);
        ArgumentNullException.ThrowIfNull(images);
        var list = images.ToArray();
        if (list.Any(i => i is null)) throw new ArgumentNullException(nameof(images), "An image is null.");
        return new ChatTurn(true, text, list);
    }

    /// <summary>An assistant turn: an answer as the model gave it (<see cref="MiniGptResponse.Text"/>) or as you want the model to remember it.</summary>
    /// <exception cref="ArgumentNullException">The text is null.</exception>
    public static ChatTurn Assistant(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        return new ChatTurn(false, text, Array.Empty<ImageInput>());
    }

    /// <summary>True for a user turn, false for an assistant turn.</summary>
    public bool IsUser { get; }

    /// <summary>The turn's text.</summary>
    public string Text { get; }

    /// <summary>The user turn's images (none for an assistant turn).</summary>
    public IReadOnlyList<ImageInput> Images { get; }
}
