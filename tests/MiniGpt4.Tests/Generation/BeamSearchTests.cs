using MiniGpt4.Generation;
using Xunit;

namespace MiniGpt4.Tests.Generation;

/// <summary>
/// Beam search against expectations derived by hand from HF 4.30's rules, on history-dependent
/// probability tables (logits = ln p, so log_softmax gives back ln p). Vocabulary: a=0, BOS=1,
/// EOS=2, b=3, c=4; num_beams 2, length_penalty 1.
/// </summary>
public class BeamSearchTests
{
    private const int A = 0, Bos = 1, Eos = 2, B = 3, C = 4;

    private static Func<IReadOnlyList<int>, float[]> Table(Dictionary<string, double[]> t) => h =>
    {
        var key = string.Concat(h.Select(x => "a?!bc"[x]));
        var p = t.TryGetValue(key, out var v) ? v : [0.2, 0.2, 0.2, 0.2, 0.2];
        Assert.Equal(1.0, p.Sum(), 9);
        return p.Select(x => (float)Math.Log(x)).ToArray();
    };

    // probabilities in id order: a, BOS, EOS, b, c
    private static Dictionary<string, double[]> Scenario() => new()
    {
        [""] = [.5, .04, .1, .3, .06],
        ["a"] = [.5, .1, .05, .15, .2],
        ["b"] = [.15, .05, .4, .1, .3],
        ["aa"] = [.5, .04, .3, .1, .06],
        ["ac"] = [.05, .01, .9, .03, .01],
        ["aaa"] = [.2, .05, .5, .15, .1],
        ["aaaa"] = [.35, .01, .6, .02, .02], // "aaaa a" (score ln(.00875)/6 = -0.790) would beat "ac" were running beams added after is_done
        ["aaab"] = [.2, .1, .5, .1, .1],
    };

    private static (GenerationResult Result, HistoryStepper Model) Beam(Dictionary<string, double[]> t, int maxNew, int beams = 2, float rp = 1f)
    {
        var model = new HistoryStepper(5, Table(t));
        var first = model.FirstLogits();
        var s = new HfGenerate(DoSample: false, NumBeams: beams, MaxNewTokens: maxNew, RepetitionPenalty: rp, LengthPenalty: 1f, EosId: Eos, BosId: Bos);
        using var g = HfGenerate.Start(model, first, s);
        return (g.RunToEnd(), model);
    }

    /// <summary>
    /// step 0: a (ln .5), b (ln .3) continue; EOS (rank 2) is not reached.
    /// step 1: a a (ln .25); b EOS (ln .12, rank 1 &lt; k) finishes "b" with score ln(.12)/2; a c (ln .1).
    /// step 2: a a a (ln .125); a c EOS (ln .09, rank 1) finishes with ln(.09)/3; a a EOS (rank 2 &gt;= k)
    ///         is skipped; a a b continues. Hypotheses: "b" -1.060, "ac" -0.803.
    /// step 3: a a a EOS (ln .0625, rank 0) finishes with ln(.0625)/4 = -0.693 and evicts "b"; not done
    ///         (worst -0.803 &lt; -2.773/4).
    /// step 4: best candidate a a a a EOS ln(.015): its score -0.840 does not enter, and is_done holds
    ///         (worst -0.803 &gt;= ln(.015)/5 = -0.840): early stop after 4 forwards although 10 tokens were allowed;
    ///         running beams are not added.
    /// </summary>
    [Fact]
    public void Eos_candidates_finish_hypotheses_and_is_done_stops_early()
    {
        var (r, model) = Beam(Scenario(), maxNew: 10);
        Assert.Equal(MiniGptFinishReason.Stop, r.Finish);
        Assert.Equal([A, A, A, Eos], r.TokenIds);
        Assert.Equal(Math.Log(.5 * .5 * .5 * .5) / 4, r.SequenceScore!.Value, 5);
        Assert.Equal(4, model.Steps);
        var h = r.Hypotheses!;
        Assert.Equal(2, h.Count);
        Assert.Equal([A, C, Eos], h[1].TokenIds);
        Assert.Equal(Math.Log(.5 * .2 * .9) / 3, h[1].Score, 5);
        Assert.True(h[0].EndedWithEos && h[1].EndedWithEos);
    }

    /// <summary>
    /// Same start, but "aaa" continues at ~.24 so that at step 3 is_done compares the worst kept
    /// hypothesis with ln(.125*.24)/4 = -0.877. With HF's rule the a a EOS candidate of step 2 was
    /// skipped (rank 2 &gt;= k), so the worst is "b" (-1.060): not done, and the search runs to
    /// max_new_tokens 4, where the two running beams (a a a a: ln(.125*.24)/5, a a a b: ln(.125*.23)/5)
    /// beat every finished one. Had the skipped candidate been added (-0.863), the scorer would have
    /// stopped at step 3 returning "a c EOS".
    /// </summary>
    [Fact]
    public void Eos_candidates_ranked_at_or_below_k_are_skipped_and_running_beams_finalize_at_max_length()
    {
        var t = Scenario();
        t["aaa"] = [.24, .21, .10, .23, .22];
        t.Remove("aaaa");
        t.Remove("aaab");
        var (r, model) = Beam(t, maxNew: 4);
        Assert.Equal(MiniGptFinishReason.Length, r.Finish);
        Assert.Equal([A, A, A, A], r.TokenIds);
        Assert.Equal(Math.Log(.5 * .5 * .5 * .24) / 5, r.SequenceScore!.Value, 5);
        Assert.Equal(3, model.Steps);
        var h = r.Hypotheses!;
        Assert.Equal([A, A, A, B], h[1].TokenIds);
        Assert.Equal(Math.Log(.5 * .5 * .5 * .23) / 5, h[1].Score, 5);
        Assert.False(h[0].EndedWithEos || h[1].EndedWithEos);
    }

    /// <summary>
    /// With as many beams as there are live prefixes (16 = 4 non-EOS tokens ^ 2), beam search keeps
    /// every prefix, so after 3 tokens its 16 hypotheses must be exactly the 16 best of all 4^3
    /// sequences by summed processed log-prob, each scored sum / 4 - checked by exhaustive
    /// enumeration. The table depends on the last two tokens, so a wrong row reorder breaks it.
    /// With a repetition penalty, each sequence's processed log-probs are penalised over its own
    /// {BOS} + history.
    /// </summary>
    [Theory]
    [InlineData(1.0f)]
    [InlineData(1.3f)]
    public void Enough_beams_find_the_exhaustive_best_sequences(float rp)
    {
        const int V = 5, K = 16, T = 3;
        double[] Probs(IReadOnlyList<int> h)
        {
            int h1 = h.Count > 0 ? h[^1] : 7, h2 = h.Count > 1 ? h[^2] : 9;
            var rng = new Random(1000 + h1 * 31 + h2);
            var w = Enumerable.Range(0, V).Select(i => i == Eos ? 1e-6 : 0.2 + rng.NextDouble()).ToArray();
            return w.Select(x => x / w.Sum()).ToArray();
        }
        var model = new HistoryStepper(V, h => Probs(h).Select(x => (float)Math.Log(x)).ToArray());
        var first = model.FirstLogits();
        var s = new HfGenerate(DoSample: false, NumBeams: K, MaxNewTokens: T, RepetitionPenalty: rp, EosId: Eos, BosId: Bos);
        using var g = HfGenerate.Start(model, first, s);
        var r = g.RunToEnd();

        int[] tokens = [A, Bos, B, C];
        var all = new List<(int[] Seq, double Sum)>();
        foreach (var x in tokens) foreach (var y in tokens) foreach (var z in tokens)
        {
            int[] seq = [x, y, z];
            double sum = 0;
            for (int i = 0; i < T; i++)
            {
                var history = seq[..i];
                double lp = Math.Log(Probs(history)[seq[i]]);
                bool penalised = seq[i] == Bos || history.Contains(seq[i]);
                sum += penalised ? lp * rp : lp;
            }
            all.Add((seq, sum));
        }
        var best = all.OrderByDescending(e => e.Sum).Take(K).ToList();
        Assert.Equal(MiniGptFinishReason.Length, r.Finish);
        Assert.Equal(K, r.Hypotheses!.Count);
        for (int i = 0; i < K; i++)
        {
            Assert.Equal(best[i].Seq, r.Hypotheses[i].TokenIds);
            Assert.Equal(best[i].Sum / (T + 1), r.Hypotheses[i].Score, 5);
        }
        Assert.Equal(best[0].Seq, r.TokenIds);
        Assert.Equal(T - 1, model.Steps);
    }

    [Fact]
    public void Beam_search_differs_from_greedy_when_a_weaker_first_token_leads_to_a_better_sequence()
    {
        // greedy: a (.5) then anything (.2 each): ln .1; beams: b (.4) then c (.9): ln .36
        var t = new Dictionary<string, double[]>
        {
            [""] = [.5, .05, .04, .4, .01],
            ["b"] = [.025, .025, .025, .025, .9],
        };
        var (r, _) = Beam(t, maxNew: 2);
        Assert.Equal([B, C], r.TokenIds);
        Assert.Equal(Math.Log(.4 * .9) / 3, r.SequenceScore!.Value, 5);

        var model = new HistoryStepper(5, Table(t));
        var first = model.FirstLogits();
        using var g = HfGenerate.Start(model, first, new HfGenerate(DoSample: false, MaxNewTokens: 2, RepetitionPenalty: 1f, EosId: Eos, BosId: Bos));
        Assert.Equal(A, g.RunToEnd().TokenIds[0]);
    }

    [Fact]
    public void Beam_search_stops_when_every_running_beam_ends_with_the_same_stop_suffix()
    {
        // every history continues with c (.9): after the first token, both beams end with c
        var model = new HistoryStepper(5, h => (h.Count == 0 ? new[] { .5, .05, .04, .4, .01 } : [.03, .03, .01, .03, .9]).Select(x => (float)Math.Log(x)).ToArray());
        var first = model.FirstLogits();
        var s = new HfGenerate(DoSample: false, NumBeams: 2, MaxNewTokens: 10, EosId: Eos, BosId: Bos, RepetitionPenalty: 1f, StopTokenSuffixes: [[C]]);
        using var g = HfGenerate.Start(model, first, s);
        var r = g.RunToEnd();
        Assert.Equal(MiniGptFinishReason.Stop, r.Finish);
        Assert.Equal([A, C], r.TokenIds);
        Assert.Equal(1, model.Steps);
    }

    [Fact]
    public void Beam_steps_stream_no_token_and_cancellation_throws()
    {
        var model = new HistoryStepper(5, Table(Scenario()));
        var first = model.FirstLogits();
        var s = new HfGenerate(DoSample: false, NumBeams: 2, MaxNewTokens: 10, EosId: Eos, BosId: Bos, RepetitionPenalty: 1f);
        using var g = HfGenerate.Start(model, first, s);
        Assert.True(g.TryStep(out var token));
        Assert.Equal(-1, token);
        Assert.True(g.TryStep(out _));
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        Assert.Throws<OperationCanceledException>(() => g.RunToEnd(cts.Token));
        Assert.Null(g.Finish);
        // after two steps: hypothesis "b EOS" (ln(.12)/2 = -1.060) and running "aa" (ln .25 / 3 = -0.462), "ac"
        var r = g.Result;
        Assert.Equal([A, A], r.TokenIds);
        Assert.Equal(Math.Log(.25) / 3, r.SequenceScore!.Value, 5);
    }

    /// <summary>
    /// HF 4.30 beam_sample warps the scores after the running beam score was added and keeps the
    /// warped values as running scores, so the temperature compounds. At T = 0.01: step 0 keeps
    /// a (ln .5 / T) and b (ln .4 / T); step 1: every continuation of a scores (ln .2 + ln .5 / T) / T
    /// = -7.09e3, b c only (ln .9 + ln .4 / T) / T = -9.17e3, so the result starts with a, unlike plain
    /// beam search (b c), with score (ln .2 + ln .5 / T) / T / 3.
    /// </summary>
    [Fact]
    public void Beam_sample_warps_after_adding_the_running_score_so_temperature_compounds()
    {
        var t = new Dictionary<string, double[]>
        {
            [""] = [.5, .05, .04, .4, .01],
            ["b"] = [.025, .025, .025, .025, .9],
        };
        const float T = 0.01f;
        for (long seed = 0; seed < 5; seed++)
        {
            var model = new HistoryStepper(5, Table(t));
            var first = model.FirstLogits();
            var s = new HfGenerate(DoSample: true, Temperature: T, NumBeams: 2, MaxNewTokens: 2, RepetitionPenalty: 1f, EosId: Eos, BosId: Bos, Seed: seed);
            using var g = HfGenerate.Start(model, first, s);
            var r = g.RunToEnd();
            Assert.Equal(2, r.TokenIds.Count);
            Assert.Equal(A, r.TokenIds[0]);
            Assert.NotEqual(Eos, r.TokenIds[1]);
            double expected = (Math.Log(.2) + Math.Log(.5) / T) / T / 3;
            Assert.Equal(expected, r.SequenceScore!.Value, Math.Abs(expected) * 1e-5);
        }
    }

    [Fact]
    public void Beam_sample_is_reproducible_by_seed()
    {
        var rng = new Random(11);
        var table = Enumerable.Range(0, 41).Select(_ => Enumerable.Range(0, 40).Select(_ => (float)(rng.NextDouble() * 3)).ToArray()).ToArray();
        GenerationResult Run(long seed)
        {
            var model = new HistoryStepper(40, h => (float[])table[h.Count == 0 ? 40 : h[^1]].Clone());
            var first = model.FirstLogits();
            using var g = HfGenerate.Start(model, first, new HfGenerate(NumBeams: 3, MaxNewTokens: 12, EosId: 39, Seed: seed));
            return g.RunToEnd();
        }
        var a = Run(1);
        Assert.Equal(a.TokenIds, Run(1).TokenIds);
        Assert.Equal(a.SequenceScore, Run(1).SequenceScore);
        Assert.Contains(Enumerable.Range(2, 4), seed => !Run(seed).TokenIds.SequenceEqual(a.TokenIds));
    }
}
