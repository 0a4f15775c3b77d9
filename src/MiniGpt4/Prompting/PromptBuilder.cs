using MiniGpt4.Abstractions;

namespace MiniGpt4.Prompting;

/// <summary>A rendered turn: the prompt, its text segments' ids, what the language model is fed, and the options with the template's stops.</summary>
internal sealed record Turn(string Prompt, IReadOnlyList<IReadOnlyList<int>> SegmentIds, PromptSequence Sequence, GenerationOptions Options);

/// <summary>
/// Builds each turn's prompt as the reference does: renders the conversation with the variant's template, splits it at
/// the image messages' placeholders (typed placeholder text stays text), tokenizes each segment on its own (BOS on the
/// first only), splices the image embeddings in, decides what happens when the prompt does not fit the context
/// (refused, or the reference's left cut when asked for), and adds the template's separator stops to the options.
/// </summary>
internal sealed class PromptBuilder(ConversationTemplate template, ILanguageModel languageModel, Func<IReadOnlyList<IReadOnlyList<int>>> separatorStops)
{
    private readonly Lazy<IReadOnlyList<IReadOnlyList<int>>> _stops = new(separatorStops);

    /// <summary>
    /// The template separator's token spellings that end an answer (<see cref="SeparatorStops"/>): with
    /// LLaMA's vocabulary the demo's <c>[835]</c> and <c>[2277, 29937]</c>; none for MiniGPT-v2.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<int>> TemplateStops => _stops.Value;

    /// <exception cref="MiniGptContextLengthException">The prompt plus MaxNewTokens exceeds MaxContextLength and truncation was not asked for.</exception>
    public Turn Build(Conversation conversation, IReadOnlyList<ImageEmbeddings> images, GenerationOptions options)
    {
        var prompt = template.Render(conversation.Messages, out var imageOffsets, conversation.SystemPrompt);
        if (imageOffsets.Count != images.Count)
            throw new InvalidOperationException($"The conversation has {imageOffsets.Count} image messages but the session holds {images.Count} images.");
        var segments = ConversationTemplate.SplitAtImages(prompt, imageOffsets);
        var ids = new List<IReadOnlyList<int>>();
        var seq = new PromptSequence();
        for (var i = 0; i < segments.Count; i++)
        {
            var segIds = languageModel.Tokenize(segments[i], addBos: i == 0);
            ids.Add(segIds);
            seq.AddTokens(segIds);
            if (i < images.Count) seq.AddImage(images[i]);
        }
        var current = seq.Length + options.MaxNewTokens;
        if (current > options.MaxContextLength)
        {
            if (!options.TruncatePromptFromLeft)
                throw new MiniGptContextLengthException(
                    $"The prompt ({seq.Length} positions, {images.Count} image(s) included) plus MaxNewTokens ({options.MaxNewTokens}) exceeds " +
                    $"MaxContextLength ({options.MaxContextLength}). Shorten the question or the conversation, lower MaxNewTokens, or set " +
                    "TruncatePromptFromLeft for the reference's left truncation (which can cut an image).",
                    seq.Length, options.MaxNewTokens, options.MaxContextLength);
            seq.SkipLeft = current - options.MaxContextLength;
        }
        var effective = options;
        if (options.UseTemplateStops && TemplateStops.Count > 0)
            effective = options with { StopTokenSequences = options.StopTokenSequences.Concat(TemplateStops).ToArray() };
        return new Turn(prompt, ids, seq, effective);
    }
}
