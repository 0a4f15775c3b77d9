using MiniGpt4.Abstractions;
namespace MiniGpt4.Generation;

/// <summary>
/// The seam between the decoding loop and a language model's cache: token ids in, logits out. The cache
/// has already been prefilled with the prompt; decoding starts from the logits the prefill returned.
/// </summary>
internal interface ITokenStepper
{
    /// <summary>Size of the logits' last dimension.</summary>
    int VocabSize { get; }

    /// <summary>Appends one token to each row and writes next-token logits (rows × <see cref="VocabSize"/>) into <paramref name="logits"/>.</summary>
    void Step(ReadOnlySpan<int> tokenPerRow, Span<float> logits);

    /// <summary>
    /// Beam search: rebuilds the rows so that new row <c>i</c> is a copy of old row <c>source[i]</c>
    /// (the count may differ from the current row count, e.g. 1 -> k at the first step).
    /// </summary>
    void ReorderRows(ReadOnlySpan<int> source);
}

/// <summary>A language model's cache as an <see cref="ITokenStepper"/>.</summary>
internal sealed class CacheStepper(ILanguageModel model, LanguageModelCache cache) : ITokenStepper
{
    public int VocabSize => model.VocabSize;

    public void Step(ReadOnlySpan<int> tokenPerRow, Span<float> logits) => model.Step(cache, tokenPerRow, logits);

    public void ReorderRows(ReadOnlySpan<int> source) => cache.ReorderRows(source);
}
