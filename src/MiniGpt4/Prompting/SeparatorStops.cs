using MiniGpt4.Text;

namespace MiniGpt4.Prompting;

/// <summary>
/// The MiniGPT-4 demo's stop rule, found from the tokenizer's own pieces: generation ends when the new
/// tokens end with the template separator <c>###</c> spelled as a word of its own (<c>▁###</c>) or glued
/// to the preceding text. With LLaMA's vocabulary these are exactly the demo's hard-coded <c>[835]</c>
/// and <c>[2277, 29937]</c>; a model with its own tokenizer gets its own spellings. The decoded answer is
/// cut at <c>###</c> as well (<see cref="AnswerPostProcessor"/>), whatever spelling the model used.
/// </summary>
internal static class SeparatorStops
{
    /// <summary>The separator's token spellings (distinct, each non-empty).</summary>
    public static IReadOnlyList<IReadOnlyList<int>> For(LlamaTextTokenizer tokenizer, string separator = AnswerPostProcessor.Separator)
    {
        var spellings = new List<IReadOnlyList<int>>();
        foreach (var ids in new[] { tokenizer.EncodeIgnoringSpecialTokens(separator), tokenizer.EncodeContinuation(separator) })
            if (ids.Count > 0 && !spellings.Any(s => s.SequenceEqual(ids))) spellings.Add(ids.ToArray());
        return spellings;
    }
}
