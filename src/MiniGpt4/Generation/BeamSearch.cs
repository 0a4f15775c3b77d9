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
internal sealed class BeamSearch : IDisposable
{
    private readonly ITokenStepper _model;
    private readonly GenerationOptions _s;
    private readonly DecodeRules _rules;
    private readonly StopSuffixes _stops;
    private readonly int _k, _vocab;
    private readonly float[] _logProbs; // [k * V]; row r = model row r
    private readonly float[] _work;     // [k * V] processed scores + beam score
    private readonly float[] _topValues;
    private readonly int[] _topIndices;
    private List<int>[] _tokens;
    private PenalisedIds[] _penalised;
    private readonly float[] _beamScores;
    private readonly int[] _rowOfBeam; // model row holding each beam's state
    private readonly BeamHypotheses _hypotheses;
    private bool _done;
    private int[]? _feedRows, _feedTokens;
    private int _modelRows = 1;
    private IReadOnlyList<BeamHypothesis>? _final;
    private readonly LogitsWarpers? _warpers;
    private readonly TokenSampler? _sampler;
    private readonly List<int> _pool = [];

    /// <summary>Starts from the prefill's <c>[1, V]</c> logits (copied).</summary>
    public BeamSearch(ITokenStepper model, ReadOnlySpan<float> firstLogits, GenerationOptions settings, DecodeRules rules, StopSuffixes stops)
    {
        _model = model;
        _s = settings;
        _rules = rules;
        _stops = stops;
        _k = settings.NumBeams;
        _vocab = model.VocabSize;
        _logProbs = new float[_k * _vocab];
        _work = new float[_k * _vocab];
        _topValues = new float[2 * _k];
        _topIndices = new int[2 * _k];
        firstLogits.CopyTo(_logProbs);
        LogitsRows.LogSoftmax(_logProbs.AsSpan(0, _vocab), _vocab);
        _tokens = new List<int>[_k];
        _penalised = new PenalisedIds[_k];
        _beamScores = new float[_k];
        _rowOfBeam = new int[_k]; // all beams read model row 0 at step 0
        for (int b = 0; b < _k; b++)
        {
            _tokens[b] = [];
            _penalised[b] = new PenalisedIds(rules.BosId);
            _beamScores[b] = b == 0 ? 0f : -1e9f;
        }
        _hypotheses = new BeamHypotheses(_k, settings.LengthPenalty);
        if (!settings.IsGreedy)
        {
            _warpers = new LogitsWarpers(_vocab);
            _sampler = new TokenSampler(settings.Seed ?? TokenSampler.NewSeed());
        }
    }

    /// <summary>The sampling seed (beam-sample), else null.</summary>
    public long? Seed => _sampler?.Seed;

    /// <summary>Releases the sampler's generator.</summary>
    public void Dispose() => _sampler?.Dispose();

    /// <summary>Diagnostics hook, see <see cref="Generator.OnProcessedScores"/>.</summary>
    public ProcessedScoresObserver? Observer { get; set; }

    /// <summary>Ids of the currently best running beam.</summary>
    public IReadOnlyList<int> BestRunning => _tokens[0];

    /// <summary>One beam step; returns the finish reason when the search ended with it, else null.</summary>
    public MiniGptFinishReason? Step(ref int modelSteps)
    {
        if (_feedTokens is not null) Feed(ref modelSteps);

        int curLen = 1 + _tokens[0].Count; // HF input_ids length: BOS + generated
        for (int b = 0; b < _k; b++)
        {
            var row = _work.AsSpan(b * _vocab, _vocab);
            _logProbs.AsSpan(_rowOfBeam[b] * _vocab, _vocab).CopyTo(row);
            LogitsProcessors.RepetitionPenalty(row, _penalised[b].Ids, _s.RepetitionPenalty);
            LogitsProcessors.MinNewTokens(row, _tokens[b].Count, _s.MinNewTokens, _rules.EosId);
            Observer?.Invoke(_tokens[b].Count, b, row);
            float beamScore = _beamScores[b];
            for (int v = 0; v < row.Length; v++) row[v] += beamScore;
        }
        int m = _sampler is null ? SelectTop(_work, _topValues, _topIndices) : SampleCandidates();

        var nextTokens = new int[_k];
        var nextSource = new int[_k];
        var nextScores = new float[_k];
        int n = 0;
        for (int rank = 0; rank < m && n < _k; rank++)
        {
            int beam = _topIndices[rank] / _vocab, token = _topIndices[rank] % _vocab;
            if (token == _rules.EosId)
            {
                if (rank >= _k) continue;
                _hypotheses.Add([.. _tokens[beam], token], _topValues[rank], curLen, endedWithEos: true);
            }
            else
            {
                nextTokens[n] = token;
                nextSource[n] = beam;
                nextScores[n] = _topValues[rank];
                n++;
            }
        }
        if (n < _k) throw new InvalidOperationException($"Beam search: fewer than {_k} non-EOS candidates (vocabulary too small).");
        _done = _done || _hypotheses.IsDone(_topValues[0], curLen);

        var tokens = new List<int>[_k];
        var penalised = new PenalisedIds[_k];
        var feedRows = new int[_k];
        for (int i = 0; i < _k; i++)
        {
            int src = nextSource[i];
            tokens[i] = [.. _tokens[src], nextTokens[i]];
            penalised[i] = _penalised[src].Clone();
            penalised[i].Add(nextTokens[i]);
            feedRows[i] = _rowOfBeam[src];
            _beamScores[i] = nextScores[i];
        }
        _tokens = tokens;
        _penalised = penalised;

        bool suffixStop = _stops.Any && _stops.AllEndWithSameSuffix(_tokens);
        bool lengthStop = _tokens[0].Count >= _s.MaxNewTokens;
        if (_done || suffixStop || lengthStop)
        {
            _final = Finalize(_hypotheses);
            return _final[0].EndedWithEos || suffixStop ? MiniGptFinishReason.Stop : MiniGptFinishReason.Length;
        }
        _feedRows = feedRows;
        _feedTokens = nextTokens;
        return null;
    }

    private void Feed(ref int modelSteps)
    {
        bool identity = _modelRows == _k;
        for (int i = 0; identity && i < _k; i++) identity = _feedRows![i] == i;
        if (!identity) _model.ReorderRows(_feedRows);
        _modelRows = _k;
        _model.Step(_feedTokens, _logProbs);
        modelSteps++;
        LogitsRows.ThrowIfNotFinite(_logProbs, step: _tokens[0].Count);
        LogitsRows.LogSoftmax(_logProbs, _vocab);
        for (int b = 0; b < _k; b++) _rowOfBeam[b] = b;
        _feedRows = _feedTokens = null;
    }

    /// <summary>The final hypotheses, best first (provisional - running beams included - before the end).</summary>
    public IReadOnlyList<BeamHypothesis> FinalHypotheses() => _final ?? Finalize(_hypotheses.Clone());

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
            var row = _work.AsSpan(b * _vocab, _vocab);
            _warpers!.Warp(row, _s.Temperature, _s.TopK, _s.TopP, minTokensToKeep: 2);
            foreach (var id in _warpers.Candidates) _pool.Add(b * _vocab + id);
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
            double target = _sampler!.NextUniform() * total, cumulative = 0;
            int chosen = weights.Count - 1;
            for (int j = 0; j < weights.Count; j++)
            {
                cumulative += weights[j];
                if (target < cumulative && weights[j] > 0) { chosen = j; break; }
            }
            if (weights[chosen] == 0) chosen = weights.FindLastIndex(w => w > 0);
            picked.Add(_pool[chosen]);
            _pool.RemoveAt(chosen);
            weights.RemoveAt(chosen);
        }
        if (picked.Count < _topValues.Length) // HF would raise: fill with the best-scored rest
        {
            var chosenSet = picked.ToHashSet();
            int need = _topValues.Length - picked.Count;
            var values = new float[_topValues.Length];
            var indices = new int[_topValues.Length];
            var masked = (float[])_work.Clone();
            foreach (var f in chosenSet) masked[f] = float.NaN; // SelectTop skips NaN
            int got = SelectTop(masked, values, indices);
            for (int j = 0; j < got && need > 0; j++, need--) picked.Add(indices[j]);
        }
        var ordered = picked.Select((f, order) => (f, order)).OrderByDescending(p => _work[p.f]).ThenBy(p => p.order).ToArray();
        for (int j = 0; j < ordered.Length; j++)
        {
            _topIndices[j] = ordered[j].f;
            _topValues[j] = _work[ordered[j].f];
        }
        return ordered.Length;
    }

    /// <summary>Top 2k scores (descending; equal scores by lower flat index) of the k*V candidates.</summary>
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
