using System.Diagnostics;
using System.Globalization;

namespace MiniGpt4.Benchmarks.Peers;

/// <summary>
/// <c>llamasharp-tg GGUF THREADS [TOKENS] [RUNS]</c>: LLamaSharp's bundled llama.cpp decoding TOKENS greedy tokens after a
/// 4-token prompt on any GGUF file (bf16, Q8_0, Q4_0, ...), like <c>llama-bench -p 0 -n TOKENS</c>; prints tokens/s per
/// run and the median. The weaker of the two llama.cpp peers in docs/benchmarks.md (its CPU build has no VNNI).
/// </summary>
internal static class LlamaSharpDecode
{
    public static int Run(string[] args)
    {
        var gguf = args[0];
        var threads = int.Parse(args[1], CultureInfo.InvariantCulture);
        var tokens = args.Length > 2 ? int.Parse(args[2], CultureInfo.InvariantCulture) : 32;
        var runs = args.Length > 3 ? int.Parse(args[3], CultureInfo.InvariantCulture) : 3;
        using var s = new LlamaCppPeerSession(gguf, PeerDType.BF16, threads, tokens + 16);
        var rates = new List<double>();
        for (var run = 0; run <= runs; run++)
        {
            s.Truncate(0);
            s.Append([1, 9038, 2501, 263]);
            var next = PeerGreedy.ArgMax(s.LastLogits());
            var clock = Stopwatch.StartNew();
            for (var i = 0; i < tokens; i++)
            {
                s.Append([next]);
                next = PeerGreedy.ArgMax(s.LastLogits());
            }
            var rate = tokens / clock.Elapsed.TotalSeconds;
            if (run > 0) rates.Add(rate); // the first run warms up
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"run {run}{(run == 0 ? " (warm-up)" : "")}: {rate:F2} tok/s"));
        }
        rates.Sort();
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{Path.GetFileName(gguf)} threads={threads}: median {rates[rates.Count / 2]:F2} tok/s (min {rates[0]:F2}, max {rates[^1]:F2})"));
        return 0;
    }
}
