using System.Globalization;
using System.Text;
using MiniGpt4.Cli.Output;

namespace MiniGpt4.Cli.Bench;

/// <summary>
/// <c>bench</c>'s output. Every figure is the median over the runs, with its min and max, and sits beside the ceiling
/// measured in the same run and the fraction of it reached. The JSON keys are documented in docs/benchmarks.md: keep them stable.
/// </summary>
internal static class BenchReport
{
    public static string Json(BenchResult r)
    {
        var s = r.Settings;
        var bw = r.ReadBandwidthGbs * 1e9;
        var loadGbs = r.Cost.FileBytes / r.LoadSeconds / 1e9;
        return Output.Json.Serialize(new Dictionary<string, object?>
        {
            ["model"] = s.Model,
            ["threads"] = s.Threads,
            ["dtype"] = s.Load.DType.ToString().ToLowerInvariant(),
            ["runs"] = s.Runs,
            ["new_tokens"] = s.NewTokens,
            ["read_bandwidth_gbs"] = Round(r.ReadBandwidthGbs),
            ["read_bandwidth_gbs_by_threads"] = r.BandwidthByThreads.Select(Round).ToArray(),
            ["bandwidth_probe_bytes"] = r.ProbeBytes,
            ["gemm_bf16_gflops"] = Round(r.GemmGflops),
            ["load_seconds"] = Round(r.LoadSeconds),
            ["load_file_bytes"] = r.Cost.FileBytes,
            ["load_gbs"] = Round(loadGbs),
            ["load_fraction_of_bandwidth"] = Round(loadGbs * 1e9 / bw),
            ["first_touch_gbs"] = Round(r.FirstTouchGbs),
            ["load_fraction_of_first_touch"] = Round(loadGbs / r.FirstTouchGbs),
            ["image_encode_ms"] = r.ImageEncodeMs is { } e ? Round(e.Median) : null,
            ["image_encode"] = r.ImageEncodeMs is { } enc ? new Dictionary<string, object>
            {
                ["ms"] = StatJson(enc), ["gflop"] = Round(r.Cost.ImageFlops / 1e9),
                ["gflops"] = Round(r.Cost.ImageFlops / (enc.Median / 1000) / 1e9),
                ["fraction_of_gemm"] = Round(r.Cost.ImageFlops / (enc.Median / 1000) / (r.GemmGflops * 1e9)),
            } : null,
            ["prefill"] = r.Prefill.Select(p => new Dictionary<string, object>
            {
                ["context"] = p.Context, ["ms"] = Round(p.Milliseconds.Median), ["ms_stats"] = StatJson(p.Milliseconds),
                ["gflop"] = Round(p.Flops / 1e9), ["gflops"] = Round(p.GflopsMedian), ["fraction_of_gemm"] = Round(p.FractionOfGemm),
            }).ToArray(),
            ["decode"] = r.Decode.Select(d => new Dictionary<string, object>
            {
                ["context"] = d.Context, ["concurrency"] = d.Concurrency,
                ["tokens_per_s"] = Round(d.TokensPerSecond.Median), ["tokens_per_s_stats"] = StatJson(d.TokensPerSecond),
                ["ms_per_token"] = Round(d.MsPerToken.Median), ["ms_per_token_stats"] = StatJson(d.MsPerToken),
                ["stream_ttft_ms"] = Round(d.TtftMs.Median), ["stream_ttft_ms_stats"] = StatJson(d.TtftMs),
                ["stream_ms_per_token"] = Round(d.StreamMsPerToken.Median), ["stream_ms_per_token_stats"] = StatJson(d.StreamMsPerToken),
                ["all_decoding_tokens_per_s"] = Round(d.SteadyTokensPerSecond.Median), ["all_decoding_tokens_per_s_stats"] = StatJson(d.SteadyTokensPerSecond),
                ["all_decoding_speedup_vs_one_stream"] = SteadySpeedUp(r, d) is { } steadyUp ? Round(steadyUp) : 0,
                ["speedup_vs_one_stream"] = SpeedUp(r, d) is { } up ? Round(up) : 0,
                ["bytes_per_step"] = d.BytesPerStep,
                ["fraction_of_bandwidth"] = Round(d.FractionOfBandwidth.Median), ["fraction_of_bandwidth_stats"] = StatJson(d.FractionOfBandwidth),
            }).ToArray(),
        });
    }

    public static string Text(BenchResult r)
    {
        var s = r.Settings;
        var b = new StringBuilder();
        void Line(string text) => b.Append(text).Append('\n');
        string Range(Stat x, string f) => $"(min {x.Min.ToString(f, CultureInfo.InvariantCulture)}, max {x.Max.ToString(f, CultureInfo.InvariantCulture)})";
        var bw = r.ReadBandwidthGbs;
        Line($"model    {s.Model}: {s.Load.DType.ToString().ToLowerInvariant()}, {s.Threads} thread{(s.Threads == 1 ? "" : "s")}, {s.Runs} run{(s.Runs == 1 ? "" : "s")} (median, min, max), {s.NewTokens} new tokens per decode");
        Line($"ceiling  read bandwidth {bw:F1} GB/s at {s.Threads} thread{(s.Threads == 1 ? "" : "s")} ({string.Join(", ", r.BandwidthByThreads.Select((x, i) => $"{x:F1} at {i + 1}"))}; best of 5 sums of {r.ProbeBytes / (double)(1L << 30):F1} GiB)");
        Line($"ceiling  bf16 GEMM {r.GemmGflops:F0} GFLOP/s (2048 x 2048 matmul, best of 5)");
        var loadGbs = r.Cost.FileBytes / r.LoadSeconds / 1e9;
        Line($"ceiling  first touch of the files' pages {r.FirstTouchGbs:F1} GB/s (fresh maps, one read per 4 KiB page)");
        Line($"load     {r.LoadSeconds:F1} s for {r.Cost.FileBytes / 1e9:F2} GB of files: {loadGbs:F2} GB/s = {loadGbs / bw:F3} of read bandwidth, " +
             $"{loadGbs / r.FirstTouchGbs:F2} of first touch");
        if (r.ImageEncodeMs is { } e)
        {
            var gf = r.Cost.ImageFlops / (e.Median / 1000) / 1e9;
            Line($"encode   image {e.Median:F0} ms {Range(e, "F0")}: {r.Cost.ImageFlops / 1e9:F0} GFLOP at {gf:F0} GFLOP/s = {gf / r.GemmGflops:F2} of GEMM");
        }
        foreach (var p in r.Prefill)
            Line($"prefill  {p.Context,5} positions {p.Milliseconds.Median,8:F0} ms {Range(p.Milliseconds, "F0")}: {p.GflopsMedian:F0} GFLOP/s = {p.FractionOfGemm:F2} of GEMM");
        foreach (var d in r.Decode)
        {
            var t = d.TokensPerSecond;
            Line($"decode   {d.Context,5} cached x{d.Concurrency} {t.Median,7:F2} tok/s {Range(t, "F2")}, {d.MsPerToken.Median:F1} ms/token: " +
                 $"{d.BytesPerStep / 1e9:F2} GB/step = {d.FractionOfBandwidth.Median:F2} of read bandwidth {Range(d.FractionOfBandwidth, "F2")}" +
                 (SpeedUp(r, d) is { } up && d.Concurrency > 1 ? $", {up:F2}x one stream" : ""));
            if (s.Concurrency.Count > 1 || d.Concurrency > 1)
            {
                Line($"         per stream: first token {d.TtftMs.Median:F0} ms {Range(d.TtftMs, "F0")}, {d.StreamMsPerToken.Median:F1} ms/token {Range(d.StreamMsPerToken, "F1")}");
                if (d.Concurrency > 1)
                    Line($"         all {d.Concurrency} decoding (no prefill in the window): {d.SteadyTokensPerSecond.Median:F2} tok/s {Range(d.SteadyTokensPerSecond, "F2")}" +
                         (SteadySpeedUp(r, d) is { } steadyUp ? $", {steadyUp:F2}x one stream" : ""));
            }
        }
        return b.ToString();
    }

    /// <summary>Aggregate tokens/s over the same context's one-stream figure (null without a one-stream measurement).</summary>
    private static double? SpeedUp(BenchResult r, DecodeResult d) =>
        r.Decode.FirstOrDefault(o => o.Context == d.Context && o.Concurrency == 1) is { } one && one.TokensPerSecond.Median > 0
            ? d.TokensPerSecond.Median / one.TokensPerSecond.Median
            : null;

    private static double? SteadySpeedUp(BenchResult r, DecodeResult d) =>
        r.Decode.FirstOrDefault(o => o.Context == d.Context && o.Concurrency == 1) is { } one && one.TokensPerSecond.Median > 0
            ? d.SteadyTokensPerSecond.Median / one.TokensPerSecond.Median
            : null;

    private static Dictionary<string, object> StatJson(Stat s) => new()
    {
        ["min"] = Round(s.Min), ["median"] = Round(s.Median), ["max"] = Round(s.Max), ["runs"] = s.Runs.Select(Round).ToArray(),
    };

    private static double Round(double v) => Math.Round(v, 4);
}
