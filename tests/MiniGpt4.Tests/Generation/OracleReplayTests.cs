using MiniGpt4.Generation;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Generation;

/// <summary>
/// Replays the reference LLM's own logits along its greedy path (oracle <c>logits_kvcache</c>:
/// row 0 = prefill logits, row t = logits after feeding greedy token t-1) and checks that the
/// engine's processed scores (HF <c>step_top5</c>) and chosen ids equal transformers 4.30's, for
/// repetition penalty 1.0 and 1.05. Where rp 1.05 leaves the greedy path, the replay covers the
/// steps up to and including the first differing token.
/// </summary>
public class OracleReplayTests
{
    [SkippableTheory]
    [MemberData(nameof(Oracle.GreedyChatRuns), MemberType = typeof(Oracle))]
    public void Processed_scores_and_greedy_ids_match_transformers(string variant, string image, string run)
    {
        var chat = Oracle.Reference["variants"]![variant]!["chat"]![image]!;
        var npy = Oracle.Array(chat["kv_cache_check"]!["logits_kvcache"]!.GetValue<string>());
        int steps = (int)npy.Shape[0], v = (int)npy.Shape[1];
        var flat = npy.ToFloat();
        var rows = Enumerable.Range(0, steps).Select(i => flat.AsSpan(i * v, v).ToArray()).ToArray();

        var greedyPath = Oracle.Ints(chat["runs"]!["rp_1.0"]!["generated_ids"]);
        var r = chat["runs"]![run]!;
        var expected = Oracle.Ints(r["generated_ids"]);
        var top5 = r["step_top5"]!.AsArray();
        float rp = r["repetition_penalty"]!.GetValue<float>();

        // The reference's logits after each prefix of the greedy path (the replay only knows that path).
        var model = new HistoryStepper(v, fed =>
        {
            if (fed.Count > 0) Assert.Equal(greedyPath[fed.Count - 1], fed[^1]);
            return rows[fed.Count];
        });
        var first = model.FirstLogits();
        var settings = new HfGenerate(DoSample: false, RepetitionPenalty: rp, MaxNewTokens: 20);
        using var g = HfGenerate.Start(model, first, settings);
        var observed = new List<(int[] Ids, float[] Values)>();
        g.OnProcessedScores = (step, beam, s) =>
        {
            var copy = s.ToArray();
            var ids = Enumerable.Range(0, copy.Length).OrderByDescending(i => copy[i]).Take(5).ToArray();
            observed.Add((ids, ids.Select(i => copy[i]).ToArray()));
        };
        var produced = new List<int>();
        while (g.TryStep(out var token))
        {
            produced.Add(token);
            if (token != greedyPath[produced.Count - 1]) break; // off the replayable path
        }
        int n = produced.Count;
        Assert.Equal(expected.Take(n), produced);
        Assert.True(n == 20 || expected[n - 1] != greedyPath[n - 1]);
        for (int t = 0; t < n; t++)
        {
            Assert.Equal(Oracle.Ints(top5[t]!["ids"]), observed[t].Ids);
            var want = top5[t]!["values"]!.AsArray().Select(x => (float)x!.GetValue<double>()).ToArray();
            Assert.Equal(want, observed[t].Values); // bit-exact: same logits, same float32 formula
        }
    }
}
