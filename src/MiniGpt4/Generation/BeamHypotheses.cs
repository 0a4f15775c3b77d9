namespace MiniGpt4.Generation;

/// <summary>One final beam-search hypothesis.</summary>
/// <param name="TokenIds">Generated ids (no BOS); ends with EOS when <paramref name="EndedWithEos"/>.</param>
/// <param name="Score">HF's final score: sum of processed log-probs / (1 + ids without EOS) ^ length_penalty.</param>
/// <param name="EndedWithEos">True when the hypothesis was finished by EOS, false when it was still running at the end.</param>
internal sealed record BeamHypothesis(IReadOnlyList<int> TokenIds, double Score, bool EndedWithEos);

/// <summary>
/// HF 4.30 <c>BeamHypotheses</c> with <c>early_stopping=False</c>: keeps the best
/// <c>num_beams</c> finished hypotheses, score = sum of log-probs / length ^ length_penalty where
/// length counts the leading BOS and not the EOS.
/// </summary>
internal sealed class BeamHypotheses
{
    private readonly int _numBeams;
    private readonly double _lengthPenalty;
    private readonly List<BeamHypothesis> _beams = [];
    private double _worstScore = 1e9;

    /// <summary>Creates an empty set.</summary>
    public BeamHypotheses(int numBeams, double lengthPenalty)
    {
        _numBeams = numBeams;
        _lengthPenalty = lengthPenalty;
    }

    /// <summary>
    /// <c>add</c>: accepted while fewer than num_beams are kept or when better than the worst;
    /// past num_beams the worst (the earliest among equal worst) is dropped.
    /// </summary>
    public void Add(IReadOnlyList<int> tokenIds, double sumLogProbs, int length, bool endedWithEos)
    {
        double score = sumLogProbs / Math.Pow(length, _lengthPenalty);
        if (_beams.Count >= _numBeams && !(score > _worstScore)) return;
        _beams.Add(new BeamHypothesis(tokenIds, score, endedWithEos));
        if (_beams.Count > _numBeams)
        {
            var order = Enumerable.Range(0, _beams.Count).OrderBy(i => _beams[i].Score).ThenBy(i => i).ToArray();
            _worstScore = _beams[order[1]].Score;
            _beams.RemoveAt(order[0]);
        }
        else
        {
            _worstScore = Math.Min(score, _worstScore);
        }
    }

    /// <summary>
    /// <c>is_done</c> (early_stopping=False heuristic): num_beams hypotheses kept and the worst of
    /// them is at least <c>bestSumLogProbs / curLen ^ length_penalty</c>, with
    /// <paramref name="curLen"/> = HF's <c>input_ids.shape[-1]</c> before the step's token.
    /// </summary>
    public bool IsDone(double bestSumLogProbs, int curLen) =>
        _beams.Count >= _numBeams && _worstScore >= bestSumLogProbs / Math.Pow(curLen, _lengthPenalty);

    /// <summary>A copy (to finalize a provisional result without touching this one).</summary>
    public BeamHypotheses Clone()
    {
        var c = new BeamHypotheses(_numBeams, _lengthPenalty) { _worstScore = _worstScore };
        c._beams.AddRange(_beams);
        return c;
    }

    /// <summary>
    /// All kept hypotheses, best first, in the order HF's <c>finalize</c> pops them
    /// (stable ascending sort by score, then taken from the end).
    /// </summary>
    public IReadOnlyList<BeamHypothesis> BestFirst()
    {
        var ascending = _beams.OrderBy(b => b.Score).ToList();
        ascending.Reverse();
        return ascending;
    }
}
