using MiniGpt4.Generation;
using Xunit;

namespace MiniGpt4.Tests.Generation;

public class DecodeLoopTests
{
    private static GenerationResult Run(HistoryStepper model, HfGenerate s)
    {
        var first = model.FirstLogits();
        using var g = HfGenerate.Start(model, first, s);
        return g.RunToEnd();
    }

    private static HfGenerate Greedy(int max = 10) =>
        new(DoSample: false, RepetitionPenalty: 1f, MaxNewTokens: max);

    /// <summary>Logits that depend on the last token: a fixed Markov table (seeded pseudo-random).</summary>
    private static Func<IReadOnlyList<int>, float[]> Markov(int vocab, int seed)
    {
        var rng = new Random(seed);
        var table = Enumerable.Range(0, vocab + 1).Select(_ => Enumerable.Range(0, vocab).Select(_ => (float)(rng.NextDouble() * 6)).ToArray()).ToArray();
        return h => (float[])table[h.Count == 0 ? vocab : h[^1]].Clone();
    }

    [Fact]
    public void Greedy_takes_the_argmax_of_each_step_and_feeds_it_back()
    {
        var f = Markov(12, 1);
        var model = new HistoryStepper(12, f);
        var r = Run(model, Greedy(8) with { EosId = 11 });

        var expected = new List<int>();
        for (int i = 0; i < 8; i++)
        {
            var l = f(expected);
            int best = Array.IndexOf(l, l.Max());
            expected.Add(best);
            if (best == 11) break;
        }
        Assert.Equal(expected, r.TokenIds);
        Assert.Equal(expected.Count - 1, model.Steps); // the last token is never fed
        Assert.Equal(expected.SkipLast(1), model.Rows[0]);
    }

    [Fact]
    public void Temperature_zero_with_sampling_is_greedy()
    {
        var f = Markov(12, 2);
        var greedy = Run(new HistoryStepper(12, f), Greedy(8) with { EosId = 11 });
        var t0 = Run(new HistoryStepper(12, f), new HfGenerate(DoSample: true, Temperature: 0f, RepetitionPenalty: 1f, MaxNewTokens: 8, EosId: 11, Seed: 5));
        Assert.Equal(greedy.TokenIds, t0.TokenIds);
    }

    [Fact]
    public void Repetition_penalty_hits_bos_and_generated_ids_once_each()
    {
        // constant logits; BOS (1) has the top positive logit. Penalty 2:
        // step 0: BOS 3.0 -> 1.5, token 3 (2.9) wins; step 1: 3 -> 1.45, token 4 (2.8) wins;
        // step 2: 4 -> 1.4, now BOS (1.5, penalised once) wins; then BOS keeps 1.5 and wins again.
        float[] l = [1.0f, 3.0f, -5f, 2.9f, 2.8f, -1f];
        var r = Run(new HistoryStepper(6, _ => (float[])l.Clone()), Greedy(5) with { RepetitionPenalty = 2f });
        Assert.Equal([3, 4, 1, 1, 1], r.TokenIds);
        Assert.Equal(MiniGptFinishReason.Length, r.Finish);

        var plain = Run(new HistoryStepper(6, _ => (float[])l.Clone()), Greedy(3));
        Assert.Equal([1, 1, 1], plain.TokenIds);
    }

    [Fact]
    public void Eos_stops_and_is_returned_and_min_new_tokens_masks_it()
    {
        // EOS (2) is the top logit everywhere; token 5 is second
        float[] l = [0f, 0f, 4f, 0f, 0f, 3f];
        var r0 = Run(new HistoryStepper(6, _ => (float[])l.Clone()), Greedy(10));
        Assert.Equal([2], r0.TokenIds); // HF min_length=1 does not mask EOS at step 0
        Assert.Equal(MiniGptFinishReason.Stop, r0.Finish);

        var model = new HistoryStepper(6, _ => (float[])l.Clone());
        var r3 = Run(model, Greedy(10) with { MinNewTokens = 3 });
        Assert.Equal([5, 5, 5, 2], r3.TokenIds);
        Assert.Equal(MiniGptFinishReason.Stop, r3.Finish);
        Assert.Equal(3, model.Steps);
    }

    [Fact]
    public void Max_new_tokens_ends_with_length()
    {
        var model = new HistoryStepper(6, _ => [0f, 0f, -9f, 1f, 0f, 0f]);
        var r = Run(model, Greedy(7));
        Assert.Equal(Enumerable.Repeat(3, 7), r.TokenIds);
        Assert.Equal(MiniGptFinishReason.Length, r.Finish);
        Assert.Equal(6, model.Steps);
    }

    /// <summary>A scripted model: emits <paramref name="script"/> in order, then token 7 forever.</summary>
    private static HistoryStepper Scripted(int vocab, params int[] script) =>
        new(vocab, h => HistoryStepper.OneHot(vocab, h.Count < script.Length ? script[h.Count] : 7));

    [Theory]
    [InlineData(new[] { 100, 200, 835, 300 }, new[] { 100, 200, 835 })]           // "▁###"
    [InlineData(new[] { 100, 2277, 29937, 300 }, new[] { 100, 2277, 29937 })]     // "##" + "#"
    [InlineData(new[] { 2277, 100, 29937, 300, 835 }, new[] { 2277, 100, 29937, 300, 835 })] // split pair does not stop
    public void Stop_token_suffixes_stop_on_both_spellings_of_hashes(int[] script, int[] expected)
    {
        var s = Greedy(20) with { StopTokenSuffixes = [[835], [2277, 29937]] }; // the MiniGPT-4 demo's stop ids
        var r = Run(Scripted(32000, script), s);
        Assert.Equal(expected, r.TokenIds);
        Assert.Equal(MiniGptFinishReason.Stop, r.Finish);
    }

    [Fact]
    public void Try_step_streams_one_token_per_call_and_reports_finish_with_the_last()
    {
        var model = Scripted(50, 10, 11, 2);
        var first = model.FirstLogits();
        using var g = HfGenerate.Start(model, first, Greedy(20));
        Assert.True(g.TryStep(out var a)); Assert.Equal(10, a); Assert.Null(g.Finish);
        Assert.True(g.TryStep(out var b)); Assert.Equal(11, b);
        Assert.True(g.TryStep(out var c)); Assert.Equal(2, c); Assert.Equal(MiniGptFinishReason.Stop, g.Finish);
        Assert.False(g.TryStep(out _));
        Assert.Equal([10, 11, 2], g.Result.TokenIds);
    }

    [Fact]
    public void A_fixed_seed_reproduces_and_different_seeds_differ()
    {
        var f = Markov(40, 3);
        HfGenerate S(long seed) => new(DoSample: true, Temperature: 1.3f, TopK: 20, TopP: 0.95f, MaxNewTokens: 40, EosId: 39, Seed: seed);
        var a = Run(new HistoryStepper(40, f), S(42));
        var b = Run(new HistoryStepper(40, f), S(42));
        var c = Run(new HistoryStepper(40, f), S(43));
        Assert.Equal(a.TokenIds, b.TokenIds);
        Assert.NotEqual(a.TokenIds, c.TokenIds);
        var greedy = Run(new HistoryStepper(40, f), Greedy(40) with { EosId = 39 });
        Assert.NotEqual(greedy.TokenIds, a.TokenIds);
    }

    [Fact]
    public void Sampling_only_draws_tokens_that_survive_top_k()
    {
        // scores 0..19: top-k 3 leaves ids 17, 18, 19
        var model = new HistoryStepper(20, _ => Enumerable.Range(0, 20).Select(i => (float)i * 0.1f).ToArray());
        var r = Run(model, new HfGenerate(TopK: 3, TopP: 1f, RepetitionPenalty: 1f, MaxNewTokens: 200, EosId: 0, Seed: 9));
        Assert.All(r.TokenIds, t => Assert.InRange(t, 17, 19));
        Assert.Equal(3, r.TokenIds.Distinct().Count());
    }

    [Theory]
    [InlineData(0, 0.9f, 1.05f, 1)]
    [InlineData(300, -0.1f, 1.05f, 1)]
    [InlineData(300, 0.9f, 0f, 1)]
    [InlineData(300, 0.9f, 1.05f, 0)]
    public void Invalid_settings_throw_before_any_step(int maxNew, float topP, float rp, int beams)
    {
        var model = new HistoryStepper(10, _ => new float[10]);
        var first = model.FirstLogits();
        var s = new HfGenerate(MaxNewTokens: maxNew, TopP: topP, RepetitionPenalty: rp, NumBeams: beams);
        Assert.Throws<ArgumentOutOfRangeException>(() => HfGenerate.Start(model, first, s));
    }

    [Fact]
    public void Wrong_logits_shape_from_the_model_is_a_clear_error()
    {
        var model = new HistoryStepper(10, _ => new float[10]);
        var e = Assert.Throws<ArgumentException>(() => HfGenerate.Start(model, new float[9], Greedy()));
        Assert.Contains("9 logits", e.Message);
    }
}
