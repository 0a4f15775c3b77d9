using MiniGpt4.Abstractions;

namespace MiniGpt4.Models;

/// <summary>
/// A language model that decodes several conversations in one forward (continuous batching): the engine's
/// scheduler steps every running answer through it at once. A model without it is stepped one cache at a time.
/// </summary>
internal interface IBatchedLanguageModel
{
    /// <summary>
    /// Appends one token to every row of each cache (<paramref name="tokens"/>: the rows of <c>caches[0]</c>, then of
    /// <c>caches[1]</c>, ...) and writes each row's next-token logits, <c>[total rows, vocabulary]</c>, into
    /// <paramref name="logits"/>. A row's logits are bit-identical to those of a step of its cache alone.
    /// </summary>
    void StepBatch(ReadOnlySpan<LanguageModelCache> caches, ReadOnlySpan<int> tokens, Span<float> logits);

    /// <summary>
    /// Prompt positions the scheduler prefills per iteration with <see cref="PrefillPart"/>, so that running answers keep
    /// stepping while a long prompt is prefilled; 0 when this model prefills whole prompts only. Positive only where a
    /// prompt prefilled in parts leaves the same cache and logits as in one call, bit for bit, so that an answer never
    /// depends on how the scheduler split its prompt.
    /// </summary>
    int PrefillChunkPositions { get; }

    /// <summary>
    /// Prefills at most <paramref name="maxPositions"/> more positions of <paramref name="prompt"/> after what
    /// <paramref name="cache"/> holds; true, and the next-token logits in <paramref name="logits"/>, once the prompt is complete.
    /// </summary>
    bool PrefillPart(LanguageModelCache cache, PromptSequence prompt, int maxPositions, Span<float> logits, CancellationToken cancellationToken);
}
