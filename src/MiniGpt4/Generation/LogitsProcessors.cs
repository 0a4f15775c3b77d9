namespace MiniGpt4.Generation;

/// <summary>
/// HF 4.30 logits processors (the part of <c>_get_logits_processor</c> MiniGPT-4 reaches), applied
/// in HF's order to one row of float32 scores in place: repetition penalty, then min length / min
/// new tokens. Used by greedy, sampling and beam search (beam search applies them to log-probs).
/// </summary>
internal static class LogitsProcessors
{
    /// <summary>
    /// <c>RepetitionPenaltyLogitsProcessor</c>: for each id in <paramref name="distinctIds"/>
    /// (HF's <c>input_ids</c> = BOS plus the generated ids; duplicates count once),
    /// <c>score &lt; 0 ? score * p : score / p</c> in float32.
    /// </summary>
    public static void RepetitionPenalty(Span<float> scores, ReadOnlySpan<int> distinctIds, float penalty)
    {
        if (penalty == 1f) return;
        foreach (var id in distinctIds)
        {
            var s = scores[id];
            scores[id] = s < 0f ? s * penalty : s / penalty;
        }
    }

    /// <summary>
    /// <c>MinLengthLogitsProcessor</c> / <c>MinNewTokensLengthLogitsProcessor</c>: while fewer than
    /// <paramref name="minNewTokens"/> tokens were generated, EOS gets -inf. (HF's <c>min_length=1</c>
    /// is already met by the leading BOS, so it equals <c>minNewTokens = 0</c>.)
    /// </summary>
    public static void MinNewTokens(Span<float> scores, int generated, int minNewTokens, int eosId)
    {
        if (generated < minNewTokens) scores[eosId] = float.NegativeInfinity;
    }

    /// <summary>Index of the first maximum (torch.argmax semantics for finite scores).</summary>
    public static int ArgMax(ReadOnlySpan<float> scores)
    {
        int best = 0;
        float bestValue = scores[0];
        for (int i = 1; i < scores.Length; i++)
            if (scores[i] > bestValue) { bestValue = scores[i]; best = i; }
        return best;
    }
}

/// <summary>
/// Tracks HF's penalised id set for one sequence: <c>input_ids</c> starts as <c>[bos]</c> when
/// generating from embeddings, then every generated id is appended; the prompt is never in it.
/// </summary>
internal sealed class PenalisedIds
{
    private readonly List<int> _ids = [];
    private readonly HashSet<int> _seen = [];

    /// <summary>Starts with the BOS id only.</summary>
    public PenalisedIds(int bosId) => Add(bosId);

    private PenalisedIds() { }

    /// <summary>The distinct ids, in first-seen order.</summary>
    public ReadOnlySpan<int> Ids => System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids);

    /// <summary>Adds an id (no-op when already present).</summary>
    public void Add(int id)
    {
        if (_seen.Add(id)) _ids.Add(id);
    }

    /// <summary>An independent copy (beam search forks sequences).</summary>
    public PenalisedIds Clone()
    {
        var c = new PenalisedIds();
        c._ids.AddRange(_ids);
        c._seen.UnionWith(_seen);
        return c;
    }
}
