using System.Runtime.InteropServices;

namespace MiniGpt4.Generation;

/// <summary>
/// What decoding needs to know of the model beside <see cref="GenerationOptions"/>: its EOS and BOS ids
/// (transformers 4.30 starts <c>input_ids</c> at <c>[bos]</c> when generating from embeddings, so BOS is
/// in the repetition penalty's set) and the stop-token suffixes (the template's separator spellings plus
/// the caller's stop ids; MiniGPT-4's <c>StoppingCriteriaSub</c>, checked after each appended token, so the
/// stop tokens are part of the output). The sampling values themselves are the options', validated there once.
/// </summary>
internal sealed record DecodeRules(int EosId = 2, int BosId = 1, IReadOnlyList<int[]>? StopTokenSuffixes = null)
{
    private IReadOnlyList<int[]> Stops => StopTokenSuffixes ?? [];

    /// <summary>Throws <see cref="ArgumentOutOfRangeException"/> for ids outside a vocabulary of <paramref name="vocabSize"/>.</summary>
    public void Validate(int vocabSize)
    {
        static void Check(bool ok, string message)
        {
            if (!ok) throw new ArgumentOutOfRangeException(nameof(DecodeRules), message);
        }
        Check(vocabSize >= 2, $"the model's vocabulary has {vocabSize} entries; at least 2 are needed.");
        Check(EosId >= 0 && EosId < vocabSize, $"EOS id {EosId} is outside the vocabulary [0, {vocabSize}).");
        Check(BosId >= 0 && BosId < vocabSize, $"BOS id {BosId} is outside the vocabulary [0, {vocabSize}).");
        foreach (var stop in Stops)
        {
            Check(stop is { Length: > 0 }, "a stop token sequence is empty.");
            foreach (var id in stop)
                Check(id >= 0 && id < vocabSize, $"stop token id {id} is outside the vocabulary [0, {vocabSize}).");
        }
    }

    /// <summary>True when <paramref name="generated"/> ends with a stop suffix.</summary>
    public bool EndsWithStop(ReadOnlySpan<int> generated)
    {
        foreach (var stop in Stops)
            if (generated.EndsWith(stop)) return true;
        return false;
    }

    /// <summary>
    /// Beam search: MiniGPT-4's criterion stops when every running row ends with the same suffix
    /// (<c>torch.all(input_ids[:, -len(stop):] == stop)</c> for some stop).
    /// </summary>
    public bool AllEndWithSameStop(IReadOnlyList<List<int>> rows) =>
        Stops.Any(stop => rows.All(row => CollectionsMarshal.AsSpan(row).EndsWith(stop)));
}
