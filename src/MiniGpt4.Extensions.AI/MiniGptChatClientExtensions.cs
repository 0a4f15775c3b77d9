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

    /// <summary>
    /// The <see cref="AdditionalPropertiesDictionary"/> key under which a MiniGPT-v2 answer's grounding boxes travel: the last
    /// <see cref="ChatResponseUpdate"/> of an answer about an image carries an
    /// <see cref="IReadOnlyList{T}"/> of <see cref="MiniGptGroundingBox"/> (empty when the answer has no box), which
    /// <see cref="ChatResponseExtensions.ToChatResponse(IEnumerable{ChatResponseUpdate})"/> puts on the response's message.
    /// Read it with <see cref="GetGroundingBoxes"/>.
    /// </summary>
    public const string GroundingBoxesKey = "minigpt4.grounding_boxes";

    /// <summary>
    /// The boxes of a MiniGPT-v2 <c>[grounding]</c>, <c>[refer]</c> or <c>[detection]</c> answer, in pixels of the
    /// conversation's last image (<see cref="MiniGptGrounding.Parse"/> with that image's size): empty when the answer
    /// has none; null when the model is not MiniGPT-v2 or the conversation has no image.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="response"/> is null.</exception>
    public static IReadOnlyList<MiniGptGroundingBox>? GetGroundingBoxes(this ChatResponse response)
    {
        ArgumentNullException.ThrowIfNull(response);
        if (response.AdditionalProperties?.TryGetValue(GroundingBoxesKey, out var value) == true && value is IReadOnlyList<MiniGptGroundingBox> boxes)
            return boxes;
        for (var i = response.Messages.Count - 1; i >= 0; i--)
            if (response.Messages[i].AdditionalProperties?.TryGetValue(GroundingBoxesKey, out value) == true && value is IReadOnlyList<MiniGptGroundingBox> found)
                return found;
        return null;
    }
}
