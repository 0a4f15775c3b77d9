namespace MiniGpt4.Generation;

/// <summary>
/// transformers 4.30 <c>beam_search</c> + <c>BeamSearchScorer</c> for one prompt with k beams.
/// Per step: log_softmax of each beam's logits, logits processors (repetition penalty over the
/// beam's {BOS} + ids, min new tokens), + the beam's running score (float32; start
/// <c>[0, -1e9, ...]</c>), top 2k over k*V; walking them best first, an EOS candidate ranked
/// within the top k becomes a finished hypothesis (ids so far, without the EOS), others are
/// skipped; the first k non-EOS candidates continue. Done when the scorer's <c>is_done</c>
/// heuristic holds, every running beam ends with the same stop suffix, or the beams reach
/// <see cref="GenerationOptions.MaxNewTokens"/>; at the end the running beams are added as
/// hypotheses unless the scorer was done, and the best hypothesis is returned.
/// <para>With sampling (HF <c>beam_sample</c>): the warpers (temperature, top-k, top-p with
/// min_tokens_to_keep 2) run on each beam's row after its running score was added, then 2k
/// candidates are drawn without replacement from softmax over all k*V warped scores and sorted by
/// warped score; these warped values are what the scorer and the running scores carry (so the
/// temperature compounds over steps, as in HF 4.30). Where fewer than 2k candidates have non-zero
/// probability (HF's multinomial raises there), the best-scored remaining ones fill up.</para>
/// <para>Step 0 keeps one model row: the k beams HF would expand from identical prompt rows are
/// virtual copies of that row (the -1e9 scores keep their candidates last), and
/// <see cref="ITokenStepper.ReorderRows"/> then grows the model to k rows.</para>
/// </summary>
internal sealed class BeamSearch : Generator
{
    private readonly int _k;
    private readonly float[] _logProbs; // [k * V]; row r = model row r
    private readonly float[] _work;     // [k * V] processed scores + beam score
    private readonly float[] _topValues;
    private readonly int[] _topIndices;
    private readonly float[] _beamScores;
    private readonly BeamHypotheses _hypotheses;
    private readonly List<int> _pool = [];
    private List<int>[] _tokens;
    private bool _done, _expanded, _fed; // expanded: the model holds k rows (before the first feed, one row serves every beam)
    private int[]? _feedRows, _feedTokens;
    private IReadOnlyList<BeamHypothesis>? _final;

    /// <summary>Starts from the prefill's <c>[1, V]</c> logits (copied).</summary>
    public BeamSearch(ITokenStepper model, ReadOnlySpan<float> firstLogits, GenerationOptions options, DecodeRules rules)
        : base(model, firstLogits, options, rules)
    {
        _k = options.NumBeams;
        _logProbs = new float[_k * Vocab];
        _work = new float[_k * Vocab];
        _topValues = new float[2 * _k];
        _topIndices = new int[2 * _k];
        firstLogits.CopyTo(_logProbs);
        LogitsProcessors.LogSoftmax(_logProbs.AsSpan(0, Vocab), Vocab);
        _tokens = [.. Enumerable.Range(0, _k).Select(_ => new List<int>())];
        _beamScores = [.. Enumerable.Range(0, _k).Select(b => b == 0 ? 0f : -1e9f)];
        _hypotheses = new BeamHypotheses(_k, options.LengthPenalty);
    }

    /// <summary>The best hypothesis and every kept one, best first (provisional - running beams included - before the end).</summary>
    public override GenerationResult Result
    {
        get
        {
            var hypotheses = _final ?? Finalize(_hypotheses.Clone());
            return new GenerationResult(hypotheses[0].TokenIds, Finish, hypotheses[0].Score, hypotheses);
        }
    }

    private int RowOf(int beam) => _expanded ? beam : 0;

    public override Span<float> FeedLogits => _logProbs;

    private protected override MiniGptFinishReason? Advance(out int token)
    {
        token = -1;
        if (_fed)
        {
            LogitsProcessors.ThrowIfNotFinite(_logProbs, step: _tokens[0].Count);
            LogitsProcessors.LogSoftmax(_logProbs, Vocab);
            _fed = false;
        }

        int curLen = 1 + _tokens[0].Count; // HF input_ids length: BOS + generated
        for (int b = 0; b < _k; b++)
        {
            var row = _work.AsSpan(b * Vocab, Vocab);
            _logProbs.AsSpan(RowOf(b) * Vocab, Vocab).CopyTo(row);
            Process(row, _tokens[b], b);
            float beamScore = _beamScores[b];
            for (int v = 0; v < row.Length; v++) row[v] += beamScore;
        }
        int m = Sampler is null ? SelectTop(_work, _topValues, _topIndices) : SampleCandidates();

        var tokens = new List<int>[_k];
        var feedRows = new int[_k];
        var feedTokens = new int[_k];
        int n = 0;
        for (int rank = 0; rank < m && n < _k; rank++)
        {
            int beam = _topIndices[rank] / Vocab, next = _topIndices[rank] % Vocab;
            if (next == Rules.EosId)
            {
                if (rank < _k) _hypotheses.Add([.. _tokens[beam], next], _topValues[rank], curLen, endedWithEos: true);
                continue;
            }
            tokens[n] = [.. _tokens[beam], next];
            feedRows[n] = RowOf(beam);
            feedTokens[n] = next;
            _beamScores[n] = _topValues[rank];
            n++;
        }
        if (n < _k) throw new InvalidOperationException($"Beam search: fewer than {_k} non-EOS candidates (vocabulary too small).");
        _done = _done || _hypotheses.IsDone(_topValues[0], curLen);
        _tokens = tokens;

        bool suffixStop = Rules.AllEndWithSameStop(_tokens);
        if (_done || suffixStop || _tokens[0].Count >= Options.MaxNewTokens)
        {
            _final = Finalize(_hypotheses);
            return _final[0].EndedWithEos || suffixStop ? MiniGptFinishReason.Stop : MiniGptFinishReason.Length;
        }
        _feedRows = feedRows;
        _feedTokens = feedTokens;
        return null;
    }

    /// <summary>Reorders the model's rows to the surviving beams and returns each beam's new token (nothing before the first step).</summary>
    private protected override ReadOnlySpan<int> Feed()
    {
        if (_feedTokens is not { } tokens) return [];
        if (!_expanded || _feedRows!.Where((row, i) => row != i).Any()) Model.ReorderRows(_feedRows);
        _expanded = true;
        _feedRows = _feedTokens = null;
        _fed = true;
        return tokens;
    }

    /// <summary><c>finalize</c>: unless done, every running beam joins the hypotheses; best first.</summary>
    private IReadOnlyList<BeamHypothesis> Finalize(BeamHypotheses hypotheses)
    {
        if (!_done)
            for (int b = 0; b < _k; b++)
                hypotheses.Add(_tokens[b].ToArray(), _beamScores[b], 1 + _tokens[b].Count, endedWithEos: false);
        return hypotheses.BestFirst();
    }

    /// <summary>
    /// beam_sample: warp each row, then draw 2k flat candidates without replacement from the
    /// softmax over all warped scores, sorted by warped score (draw order among equal scores).
    /// </summary>
    private int SampleCandidates()
    {
        _pool.Clear();
        for (int b = 0; b < _k; b++)
        {
            var row = _work.AsSpan(b * Vocab, Vocab);
            Warpers!.Warp(row, Options.Temperature, Options.TopK, Options.TopP, minTokensToKeep: 2);
            foreach (var id in Warpers.Candidates) _pool.Add(b * Vocab + id);
        }
        float max = float.NegativeInfinity;
        foreach (var f in _pool) if (_work[f] > max) max = _work[f];
        var weights = _pool.Select(f => Math.Exp((double)_work[f] - max)).ToList();
        var picked = new List<int>(_topValues.Length);
        while (picked.Count < _topValues.Length && _pool.Count > 0)
        {
            double total = 0;
            foreach (var w in weights) total += w;
            if (!(total > 0)) break;
            double target = Sampler!.NextUniform() * total, cumulative = 0;
            int chosen = weights.FindLastIndex(w => w > 0); // when rounding puts the target past the total
            for (int j = 0; j < weights.Count; j++)
            {
                cumulative += weights[j];
                if (target < cumulative && weights[j] > 0) { chosen = j; break; }
            }
            picked.Add(_pool[chosen]);
            _pool.RemoveAt(chosen);
            weights.RemoveAt(chosen);
        }
        if (picked.Count < _topValues.Length) // HF would raise: fill with the best-scored rest
        {
            var masked = (float[])_work.Clone();
            foreach (var f in picked) masked[f] = float.NaN; // SelectTop skips NaN
            var values = new float[_topValues.Length - picked.Count];
            var indices = new int[values.Length];
            picked.AddRange(indices.Take(SelectTop(masked, values, indices)));
        }
        var ordered = picked.Select((f, order) => (f, order)).OrderByDescending(p => _work[p.f]).ThenBy(p => p.order).ToArray();
        for (int j = 0; j < ordered.Length; j++)
        {
            _topIndices[j] = ordered[j].f;
            _topValues[j] = _work[ordered[j].f];
        }
        return ordered.Length;
    }

    /// <summary>The top scores (as many as <paramref name="values"/> holds; descending, equal scores by lower flat index), NaN skipped.</summary>
    private static int SelectTop(ReadOnlySpan<float> scores, float[] values, int[] indices)
    {
        int cap = values.Length, count = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            float v = scores[i];
            if (float.IsNaN(v)) continue;
            if (count == cap && !(v > values[cap - 1])) continue;
            int pos = count < cap ? count : cap - 1;
            while (pos > 0 && values[pos - 1] < v) pos--;
            int end = count < cap ? count : cap - 1;
            for (int j = end; j > pos; j--) { values[j] = values[j - 1]; indices[j] = indices[j - 1]; }
            values[pos] = v;
            indices[pos] = i;
            if (count < cap) count++;
        }
        return count;
    }
}
