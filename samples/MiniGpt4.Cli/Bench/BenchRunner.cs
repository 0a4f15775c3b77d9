using System.Diagnostics;
using MiniGpt4.Abstractions;

namespace MiniGpt4.Cli.Bench;

/// <summary>What <c>bench</c> runs.</summary>
internal sealed record BenchSettings(
    string Model, MiniGptLoadOptions Load, int Threads, IReadOnlyList<int> Contexts, IReadOnlyList<int> Concurrency, int Runs, int NewTokens);

/// <summary>min / median / max of one figure over the runs, with the runs in order (the first shows any cold start).</summary>
internal sealed record Stat(double Min, double Median, double Max, double[] Runs)
{
    public static Stat Of(IEnumerable<double> values)
    {
        var runs = values.ToArray();
        var sorted = runs.Order().ToArray();
        var mid = sorted.Length / 2;
        var median = sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
        return new Stat(sorted[0], median, sorted[^1], runs);
    }
}

internal sealed record PrefillResult(int Context, Stat Milliseconds, double Flops, double GemmFlops)
{
    public double GflopsMedian => Flops / (Milliseconds.Median / 1000) / 1e9;
    public double FractionOfGemm => Flops / (Milliseconds.Median / 1000) / GemmFlops;
}

/// <param name="TtftMs">Per stream: from sending the request to its first token (mean over the streams of a run).</param>
/// <param name="StreamMsPerToken">Per stream: from its first token to its last over the tokens between (mean over the streams of a run).</param>
/// <param name="SteadyTokensPerSecond">All streams together while every one of them was decoding (from the last stream's first
/// token to the first stream's last): the batched decode rate without the newcomers' prefills in its window.</param>
internal sealed record DecodeResult(int Context, int Concurrency, Stat TokensPerSecond, long BytesPerStep, double BandwidthBytes,
    Stat TtftMs, Stat StreamMsPerToken, Stat SteadyTokensPerSecond)
{
    /// <summary>Per stream: the time between two tokens of one session.</summary>
    public Stat MsPerToken => Stat.Of(TokensPerSecond.Runs.Select(t => 1000.0 * Concurrency / t));

    /// <summary>Decode steps per second × bytes a step must read (weights once + every stream's cache) ÷ read bandwidth.</summary>
    public Stat FractionOfBandwidth => Stat.Of(TokensPerSecond.Runs.Select(t => t / Concurrency * BytesPerStep / BandwidthBytes));
}

internal sealed record BenchResult(
    BenchSettings Settings, long ProbeBytes, double[] BandwidthByThreads, double GemmGflops, double FirstTouchGbs, double LoadSeconds, ModelCost Cost,
    Stat? ImageEncodeMs, IReadOnlyList<PrefillResult> Prefill, IReadOnlyList<DecodeResult> Decode)
{
    public double ReadBandwidthGbs => BandwidthByThreads[^1];
}

/// <summary>
/// Runs the measurements of <c>bench</c> in one process, in this order: the ceilings (read bandwidth, bf16 GEMM), the
/// load, then <see cref="BenchSettings.Runs"/> rounds of image encoding (when the model has a vision tower) and, for
/// each context and concurrency, a prefill to that context followed by greedy decoding. Only the library's public API is used.
/// </summary>
internal static class BenchRunner
{
    public static async Task<BenchResult> RunAsync(BenchSettings s, TextWriter log, CancellationToken ct)
    {
        var probeBytes = Probes.BandwidthBytes();
        log.WriteLine($"[bench] read bandwidth: summing {probeBytes / (double)(1L << 30):F1} GiB on 1..{s.Threads} threads");
        var bandwidth = Probes.ReadBandwidth(s.Threads, probeBytes);
        log.WriteLine($"[bench] read bandwidth {string.Join(", ", bandwidth.Select((b, i) => $"{b:F1} GB/s at {i + 1}"))}");
        var gemm = Probes.GemmBf16(s.Threads);
        log.WriteLine($"[bench] bf16 GEMM {gemm:F0} GFLOP/s");
        ct.ThrowIfCancellationRequested();

        var cost = ModelCost.For(s.Model);
        Probes.FirstTouch(cost.Files); // brings the files into the page cache if they are not
        var firstTouch = Probes.FirstTouch(cost.Files);
        log.WriteLine($"[bench] first touch of the weight files' pages {firstTouch:F1} GB/s");
        var load = Stopwatch.StartNew();
        using var pipeline = await MiniGptPipeline.LoadAsync(s.Model, s.Load, null, ct);
        var loadSeconds = load.Elapsed.TotalSeconds;
        log.WriteLine($"[bench] loaded in {loadSeconds:F1} s");

        var lm = pipeline.LanguageModel;
        var element = s.Load.DType == MiniGptDType.Float32 ? 4 : 2;
        var weightBytes = cost.DecodeWeightBytes(element);
        var options = GenerationOptions.Greedy with { MaxNewTokens = s.NewTokens, MinNewTokens = s.NewTokens, UseTemplateStops = false };
        var encode = new List<double>();
        var prefill = s.Contexts.ToDictionary(c => c, _ => new List<double>());
        var decode = s.Contexts.SelectMany(c => s.Concurrency.Select(k => (c, k))).ToDictionary(x => x, _ => new List<double>());
        var ttft = decode.Keys.ToDictionary(x => x, _ => new List<double>());
        var perStream = decode.Keys.ToDictionary(x => x, _ => new List<double>());
        var steady = decode.Keys.ToDictionary(x => x, _ => new List<double>());
        for (var run = 0; run < s.Runs; run++)
        {
            if (pipeline.VisionEncoder is not null)
            {
                using var session = pipeline.CreateSession();
                var sw = Stopwatch.StartNew();
                await session.AddImageAsync(TestImage(run), ct);
                encode.Add(sw.Elapsed.TotalMilliseconds);
                log.WriteLine($"[bench] run {run + 1}: image encode {encode[^1]:F0} ms");
            }
            foreach (var context in s.Contexts)
                foreach (var k in s.Concurrency)
                {
                    var fill = Fill(lm, context, s.NewTokens);
                    var (prefillMs, tps, firstMs, streamMs, steadyTps) = await DecodeAsync(pipeline, lm, fill, k, run, options, ct);
                    if (k == s.Concurrency[0]) prefill[context].Add(prefillMs);
                    decode[(context, k)].Add(tps);
                    ttft[(context, k)].Add(firstMs);
                    perStream[(context, k)].Add(streamMs);
                    steady[(context, k)].Add(steadyTps);
                    log.WriteLine($"[bench] run {run + 1}: context {fill} x{k}: prefill {prefillMs:F0} ms, decode {tps:F2} tok/s, " +
                                  $"per stream: first token {firstMs:F0} ms, {streamMs:F1} ms/token, all streams decoding {steadyTps:F2} tok/s");
                }
        }

        var bw = bandwidth[^1] * 1e9;
        return new BenchResult(s, probeBytes, bandwidth, gemm, firstTouch, loadSeconds, cost,
            encode.Count > 0 ? Stat.Of(encode) : null,
            s.Contexts.Select(c => new PrefillResult(Fill(lm, c, s.NewTokens), Stat.Of(prefill[c]), cost.PrefillFlops(Fill(lm, c, s.NewTokens)), gemm * 1e9)).ToList(),
            decode.Select(d =>
            {
                var fill = Fill(lm, d.Key.c, s.NewTokens);
                var kv = lm.CacheBytesPerPosition * (fill + s.NewTokens / 2);
                return new DecodeResult(fill, d.Key.k, Stat.Of(d.Value), weightBytes + d.Key.k * kv, bw, Stat.Of(ttft[d.Key]), Stat.Of(perStream[d.Key]), Stat.Of(steady[d.Key]));
            }).ToList());
    }

    /// <summary>The positions a context fills: at most what leaves room for the new tokens.</summary>
    private static int Fill(ILanguageModel lm, int context, int newTokens) => Math.Max(1, Math.Min(context, lm.ContextLength - newTokens - 1));

    /// <summary>
    /// <paramref name="k"/> concurrent requests of <paramref name="fill"/> prompt positions each. Returns the prefill time
    /// (mean over the requests), the decode rate: for one request the library's own figure (as generate reports it),
    /// for several (batched by the engine) the tokens after each request's first, over the time from the first first token
    /// to the last finish; and per stream (means over the requests) the time to the first token and between tokens; and
    /// the rate while all <paramref name="k"/> were decoding (tokens that arrived from the last first token to the first
    /// last token, over that time).
    /// </summary>
    private static async Task<(double PrefillMs, double TokensPerSecond, double TtftMs, double StreamMsPerToken, double SteadyTokensPerSecond)> DecodeAsync(
        MiniGptPipeline pipeline, ILanguageModel lm, int fill, int k, int run, GenerationOptions options, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var results = await Task.WhenAll(Enumerable.Range(0, k).Select(async i =>
        {
            var prompt = new PromptSequence().AddTokens(Prompt(lm, fill, run * 97 + i * 13));
            double first = -1, last = 0;
            var arrivals = new List<(double At, int Tokens)>();
            GenerationUpdate? final = null;
            await foreach (var u in pipeline.GenerateAsync(prompt, options, ct))
            {
                if (first < 0) first = clock.Elapsed.TotalSeconds;
                last = clock.Elapsed.TotalSeconds;
                arrivals.Add((last, u.TokenIds.Count));
                final = u;
            }
            return (First: first, Last: last, Arrivals: arrivals, Timings: final!.Timings!, Usage: final.Usage!);
        }));
        double from = results.Max(r => r.First), to = results.Min(r => r.Last);
        var inWindow = results.Sum(r => r.Arrivals.Where(a => a.At > from && a.At <= to).Sum(a => a.Tokens));
        var steady = to > from ? inWindow / (to - from) : 0;
        var prefillMs = results.Average(r => r.Timings.PrefillMilliseconds);
        var ttftMs = results.Average(r => r.First * 1000);
        var streamMs = results.Average(r => r.Usage.GeneratedTokens > 1 ? (r.Last - r.First) * 1000 / (r.Usage.GeneratedTokens - 1) : 0);
        if (k == 1) return (prefillMs, results[0].Timings.DecodeTokensPerSecond, ttftMs, streamMs, results[0].Timings.DecodeTokensPerSecond);
        var tokens = results.Sum(r => Math.Max(0, r.Usage.GeneratedTokens - 1));
        var window = results.Max(r => r.Last) - results.Min(r => r.First);
        return (prefillMs, window > 0 ? tokens / window : 0, ttftMs, streamMs, steady);
    }

    /// <summary>BOS then ids spread over the vocabulary (never BOS or EOS), varied by <paramref name="salt"/> so no two requests share a prefix.</summary>
    private static int[] Prompt(ILanguageModel lm, int length, int salt)
    {
        var ids = new int[length];
        ids[0] = lm.BeginningOfSequenceId;
        var span = Math.Max(1, Math.Min(lm.VocabSize, 32000) - 3);
        for (var i = 1; i < length; i++) ids[i] = 3 + (int)(((long)(i + salt) * 7919 + salt * 31L) % span);
        return ids;
    }

    /// <summary>A 640 × 480 gradient with shapes, different in each run (so no cache can answer for the encoder).</summary>
    private static ImageInput TestImage(int run)
    {
        const int w = 640, h = 480;
        var rgb = new byte[w * h * 3];
        for (var y = 0; y < h; y++)
            for (var x = 0; x < w; x++)
            {
                var i = (y * w + x) * 3;
                var inCircle = (x - 320) * (x - 320) + (y - 240) * (y - 240) < 120 * 120;
                rgb[i] = (byte)(x * 255 / w);
                rgb[i + 1] = (byte)(inCircle ? 255 - run : y * 255 / h);
                rgb[i + 2] = (byte)((x + y + run * 7) & 0xFF);
            }
        return ImageInput.FromRgb(w, h, rgb);
    }
}
