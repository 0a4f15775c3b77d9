using MiniGpt4.Generation;
using Xunit;

namespace MiniGpt4.Tests.Generation;

public class ProcessorsTests
{
    [Fact]
    public void Repetition_penalty_divides_positive_and_multiplies_negative_scores_once_per_id()
    {
        float[] s = [1f, 3f, -2f, 0.5f, -0.25f];
        // ids as HF's input_ids: BOS (1) first, then generated ids 2, 4, 2 (2 counts once)
        LogitsProcessors.RepetitionPenalty(s, bosId: 1, [2, 4, 2], 1.25f);
        Assert.Equal([1f, 3f / 1.25f, -2f * 1.25f, 0.5f, -0.25f * 1.25f], s);
    }

    [Fact]
    public void Temperature_divides_every_score()
    {
        float[] s = [1f, -2f, 0.3f];
        new LogitsWarpers(3).Warp(s, 0.5f, topK: 0, topP: 1f);
        Assert.Equal([1f / 0.5f, -2f / 0.5f, 0.3f / 0.5f], s);
    }

    [Fact]
    public void Top_k_keeps_the_k_largest_and_ties_with_the_kth()
    {
        float[] s = [0.1f, 5f, 2f, 2f, -1f, 3f];
        var w = new LogitsWarpers(s.Length);
        w.Warp(s, 1f, topK: 3, topP: 1f);
        var ninf = float.NegativeInfinity;
        Assert.Equal([ninf, 5f, 2f, 2f, ninf, 3f], s); // 3rd largest is 2: both 2s stay
        Assert.Equal([1, 2, 3, 5], w.Candidates.ToArray().Order());
    }

    [Theory]
    [InlineData(0.45f, new[] { 0 })]
    [InlineData(0.75f, new[] { 0, 1 })]
    [InlineData(0.85f, new[] { 0, 1, 2 })]
    [InlineData(0.99f, new[] { 0, 1, 2, 3 })]
    [InlineData(0.0f, new[] { 0 })] // min_tokens_to_keep = 1
    public void Top_p_keeps_the_smallest_top_set_whose_mass_reaches_p(float p, int[] expected)
    {
        double[] probs = [0.5, 0.3, 0.15, 0.05];
        var s = probs.Select(x => (float)Math.Log(x)).ToArray();
        var w = new LogitsWarpers(s.Length);
        w.Warp(s, 1f, topK: 0, topP: p);
        Assert.Equal(expected, w.Candidates.ToArray().Order());
        for (int i = 0; i < s.Length; i++)
            Assert.Equal(expected.Contains(i), float.IsFinite(s[i]));
    }

    [Theory]
    [InlineData(0, 0.9f, false)]
    [InlineData(0, 0.5f, false)]
    [InlineData(0, 0.99f, false)]
    [InlineData(0, 0.05f, false)]
    [InlineData(0, 0.9f, true)]
    [InlineData(50, 0.9f, false)]
    [InlineData(50, 0.3f, false)]
    [InlineData(50, 0.9f, true)]
    public void Top_k_then_top_p_on_a_32000_vocabulary_matches_a_brute_force_ranking(int topK, float p, bool ties)
    {
        var rng = new Random(7);
        int v = 32000;
        // peaked, LLM-like logits; with ties: quantized to 1/4 so many tokens share a value
        var logits = Enumerable.Range(0, v).Select(_ => (float)(rng.NextDouble() * 4 + (rng.NextDouble() < 0.01 ? 6 : 0))).ToArray();
        if (ties) logits = logits.Select(x => MathF.Round(x * 4) / 4).ToArray();
        var s = (float[])logits.Clone();
        var w = new LogitsWarpers(v);
        w.Warp(s, 1f, topK, p);

        // first principles: rank by logit (equal logits: lower id first), keep the top k (ties at
        // the kth stay), then walk from the top, keeping tokens until the kept mass reaches p
        var ranked = Enumerable.Range(0, v).OrderByDescending(i => logits[i]).ToArray();
        var pool = topK > 0 ? ranked.Where(i => logits[i] >= logits[ranked[topK - 1]]).ToArray() : ranked;
        double max = logits[ranked[0]];
        double z = pool.Sum(i => Math.Exp(logits[i] - max));
        var expected = new List<int>();
        double mass = 0;
        foreach (var i in pool)
        {
            expected.Add(i);
            mass += Math.Exp(logits[i] - max) / z;
            if (mass >= p) break;
        }
        Assert.Equal(expected.Order(), w.Candidates.ToArray().Order());
        Assert.Equal(expected.Count, s.Count(float.IsFinite));
        foreach (var i in expected) Assert.Equal(logits[i], s[i]);
    }

    [Fact]
    public void Sampler_follows_softmax_probabilities()
    {
        // P(0) = 0.25, P(1) = 0.75; 4000 draws with a fixed seed (deterministic, so no flakiness)
        float[] s = [(float)Math.Log(0.25), (float)Math.Log(0.75), float.NegativeInfinity];
        using var sampler = new TokenSampler(123);
        int ones = 0, n = 4000;
        for (int i = 0; i < n; i++)
        {
            int t = sampler.Sample(s, [0, 1, 2]);
            Assert.NotEqual(2, t);
            if (t == 1) ones++;
        }
        Assert.InRange(ones / (double)n, 0.75 - 0.035, 0.75 + 0.035); // 5 sigma
    }
}
