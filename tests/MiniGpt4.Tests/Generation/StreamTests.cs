using MiniGpt4.Generation;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt4.Tests.Generation;

public class StreamTests(ITestOutputHelper output)
{
    private static HistoryStepper Counting(int vocab = 50) =>
        new(vocab, h => HistoryStepper.OneHot(vocab, 10 + h.Count % 30)); // 10, 11, 12, ...

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Stream_yields_every_token_and_ends_with_the_finish_reason(bool offload)
    {
        var model = Counting();
        using var first = model.FirstLogits();
        using var g = new Generator(model, first, new SamplingSettings(DoSample: false, MaxNewTokens: 6, RepetitionPenalty: 1f));
        var got = new List<int>();
        await foreach (var t in GenerationStream.StreamAsync(g, offload: offload)) got.Add(t);
        Assert.Equal([10, 11, 12, 13, 14, 15], got);
        Assert.Equal(FinishReason.Length, g.Finish);
        Assert.Equal(got, g.Result.TokenIds);
    }

    [Fact]
    public async Task Cancellation_mid_stream_ends_with_cancelled_and_the_tokens_so_far()
    {
        var model = Counting();
        using var cts = new CancellationTokenSource();
        model.OnStep = n => { if (n == 3) cts.Cancel(); }; // cancelled while the 4th token is computed
        using var first = model.FirstLogits();
        using var g = new Generator(model, first, new SamplingSettings(DoSample: false, MaxNewTokens: 100, RepetitionPenalty: 1f));
        var got = new List<int>();
        await foreach (var t in GenerationStream.StreamAsync(g, cts.Token)) got.Add(t);
        Assert.Equal([10, 11, 12, 13], got); // the step in flight completes and is delivered
        Assert.Equal(FinishReason.Cancelled, g.Finish);
        Assert.Equal(got, g.Result.TokenIds);
        Assert.Equal(FinishReason.Cancelled, g.Result.Finish);
        Assert.Equal(3, model.Steps);
    }

    [Fact]
    public async Task Cancellation_through_WithCancellation_is_honoured_too()
    {
        var model = Counting();
        using var cts = new CancellationTokenSource();
        using var first = model.FirstLogits();
        using var g = new Generator(model, first, new SamplingSettings(DoSample: false, MaxNewTokens: 100, RepetitionPenalty: 1f));
        var got = new List<int>();
        await foreach (var t in GenerationStream.StreamAsync(g).WithCancellation(cts.Token))
        {
            got.Add(t);
            if (got.Count == 2) cts.Cancel();
        }
        Assert.Equal([10, 11], got);
        Assert.Equal(FinishReason.Cancelled, g.Finish);
    }

    [Fact]
    public async Task Leaving_the_stream_early_cancels_the_run()
    {
        var model = Counting();
        using var first = model.FirstLogits();
        using var g = new Generator(model, first, new SamplingSettings(DoSample: false, MaxNewTokens: 100, RepetitionPenalty: 1f));
        await foreach (var t in GenerationStream.StreamAsync(g))
            if (t == 12) break;
        Assert.Equal(FinishReason.Cancelled, g.Finish);
        Assert.Equal([10, 11, 12], g.Result.TokenIds);
    }

    [Fact]
    public void Run_to_end_with_a_cancelled_token_returns_cancelled_without_tokens()
    {
        var model = Counting();
        using var first = model.FirstLogits();
        using var g = new Generator(model, first, new SamplingSettings(DoSample: false, RepetitionPenalty: 1f));
        var r = g.RunToEnd(new CancellationToken(true));
        Assert.Equal(FinishReason.Cancelled, r.Finish);
        Assert.Empty(r.TokenIds);
        Assert.Equal(0, model.Steps);
    }

    [Fact]
    public async Task Beam_stream_yields_the_best_hypothesis_at_the_end()
    {
        var model = Counting();
        using var first = model.FirstLogits();
        using var g = new Generator(model, first, new SamplingSettings(DoSample: false, NumBeams: 3, MaxNewTokens: 4, RepetitionPenalty: 1f));
        var got = new List<int>();
        await foreach (var t in GenerationStream.StreamAsync(g)) got.Add(t);
        Assert.Equal([10, 11, 12, 13], got);
        Assert.Equal(FinishReason.Length, g.Finish);
        Assert.Equal(got, g.Result.TokenIds);
    }

    [Fact]
    public void Processing_cost_per_step_at_vocabulary_32000()
    {
        // Reports (does not assert) the engine's own per-step work with the demo's settings on
        // V = 32000: logits copy out of the tensor, repetition penalty over 300 ids, top-k 50,
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
                LogitsRows.CopyTo(logits, 1, V, scores, step: 0);
                LogitsProcessors.RepetitionPenalty(scores, ids, 1.05f);
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
