using MiniGpt4.Generation;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt4.Tests.Generation;

/// <summary>The engine's own per-step work at LLaMA's vocabulary size (reported, not asserted).</summary>
public class ProcessingCostTests(ITestOutputHelper output)
{
    [Fact]
    public void Processing_cost_per_step_at_vocabulary_32000()
    {
        // Reports (does not assert) the engine's own per-step work with the demo's settings on
        // V = 32000: logits copy out of the tensor and finiteness check, repetition penalty over 300 ids, top-k 50,
        // top-p 0.9, draw. Logits: a peaked random row (a few tokens well above the rest).
        const int V = 32000, N = 300;
        var rng = new Random(3);
        var l = Enumerable.Range(0, V).Select(_ => (float)(rng.NextDouble() * 6 + (rng.NextDouble() < 0.002 ? 8 : 0))).ToArray();
        using var logits = TorchSharp.torch.tensor(l, [1, V]);
        var ids = Enumerable.Range(0, N).Select(i => i * 97 % V).ToArray();
        var scores = new float[V];
        var warpers = new LogitsWarpers(V);
        using var sampler = new TokenSampler(1);
        foreach (var (name, topK, topP, sample) in new[] { ("copy+penalty+argmax", 0, 1f, false), ("copy+penalty+k50+p0.9+draw", 50, 0.9f, true), ("copy+penalty+p0.9+draw (no top-k)", 0, 0.9f, true) })
        {
            var sw = new System.Diagnostics.Stopwatch();
            var process = System.Diagnostics.Process.GetCurrentProcess();
            var cpu0 = TimeSpan.Zero;
            for (int i = -N; i < N; i++) // the first N warm the JIT up
            {
                if (i == 0) { sw.Start(); process.Refresh(); cpu0 = process.TotalProcessorTime; }
                Runtime.TensorMath.CopyTo(logits, scores);
                LogitsProcessors.ThrowIfNotFinite(scores, step: 0);
                LogitsProcessors.RepetitionPenalty(scores, 1, ids, 1.05f);
                if (!sample) { LogitsProcessors.ArgMax(scores); continue; }
                warpers.Warp(scores, 1f, topK, topP);
                sampler.Sample(scores, warpers.Candidates);
            }
            sw.Stop();
            process.Refresh();
            var cpu = (process.TotalProcessorTime - cpu0).TotalMilliseconds / N;
            output.WriteLine($"{name}: {sw.Elapsed.TotalMilliseconds / N:F3} ms/step wall, {cpu:F3} ms/step process CPU, {warpers.Candidates.Length} tokens kept");
        }
    }
}
