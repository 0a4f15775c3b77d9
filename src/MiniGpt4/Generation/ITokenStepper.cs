using TorchSharp;

namespace MiniGpt4.Generation;

/// <summary>
/// The seam between the generation engine and a language model session: the engine knows token
/// ids and logits only. A session has already been prefilled with the prompt by its owner; the
/// engine starts from the logits that prefill returned.
/// </summary>
internal interface ITokenStepper
{
    /// <summary>Size of the logits' last dimension.</summary>
    int VocabSize { get; }

    /// <summary>
    /// Appends one token to each live row's cache and returns next-token logits
    /// <c>[rows, VocabSize]</c> as float32 on the CPU; the caller owns (disposes) the result.
    /// </summary>
    torch.Tensor Step(ReadOnlySpan<int> tokenPerRow);

    /// <summary>
    /// Beam search: rebuilds the rows so that new row <c>i</c> is a copy of old row <c>source[i]</c>
    /// (the count may differ from the current row count, e.g. 1 -> k at the first step).
    /// </summary>
    void ReorderRows(ReadOnlySpan<int> source);
}
