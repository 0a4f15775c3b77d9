using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;

namespace MiniGpt4.Benchmarks.Peers;

/// <summary>In-process (both native runtimes in one process, one engine loaded at a time), 2 warm-ups, 5 measured iterations, min/max shown.</summary>
public sealed class PeerBenchConfig : ManualConfig
{
    /// <summary>Creates the config.</summary>
    public PeerBenchConfig()
    {
        AddJob(Job.Default.WithToolchain(InProcessEmitToolchain.Instance)
            .WithLaunchCount(1).WithWarmupCount(2).WithIterationCount(5));
        AddColumn(StatisticColumn.Min, StatisticColumn.Max);
    }
}

/// <summary>
/// MiniGpt4.NET against llama.cpp (LLamaSharp 0.30.0) on the same weights: a random-weight LLaMA
/// with the real 7B layer shape (hidden 4096, 32 heads, FFN 11008, vocab 32000,
/// <see cref="PeerModelFiles.Layers"/> blocks), read by ours from an HF folder and by llama.cpp from
/// its GGUF conversion, at the same precision and thread count. Before timing, each setup decodes
/// 16 greedy tokens from a fixed prompt and compares the tokens and the first logits with the other
/// engine's (when that engine already ran in this process), printing the result.
/// </summary>
[Config(typeof(PeerBenchConfig))]
public class PeerLlamaBenchmarks
{
    /// <summary>Cached positions under the decode step and the prefill chunk.</summary>
    public const int Context = 256;

    /// <summary>Prompt length of <see cref="Prefill128"/>.</summary>
    public const int PromptTokens = 128;

    private static readonly Dictionary<PeerDType, (PeerEngine Engine, int[] Tokens, float[] Logits)> Greedy = [];
    private IPeerSession _session = null!;
    private int[] _prompt = null!;

    /// <summary>Engine.</summary>
    [Params(PeerEngine.MiniGpt4, PeerEngine.LlamaCpp)]
    public PeerEngine Engine { get; set; }

    /// <summary>Weight precision (both engines).</summary>
    [Params(PeerDType.F32, PeerDType.BF16)]
    public PeerDType DType { get; set; }

    /// <summary>Threads (libtorch intra-op threads / llama.cpp n_threads and n_threads_batch).</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>Loads the engine, checks greedy agreement, fills <see cref="Context"/> cache positions.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _prompt = Enumerable.Range(0, PromptTokens).Select(i => 3 + (i * 7919 % 31000)).ToArray();
        _session = Open(Engine, DType, Threads, Context + PromptTokens + 16);
        CheckAgreement();
        _session.Truncate(0);
        for (var filled = 0; filled < Context; filled += PromptTokens) _session.Append(_prompt);
    }

    internal static IPeerSession Open(PeerEngine engine, PeerDType dtype, int threads, int capacity) => engine switch
    {
        PeerEngine.MiniGpt4 => new MiniGptPeerSession(PeerModelFiles.BenchHfFolder(), dtype, threads, capacity),
        _ => new LlamaCppPeerSession(PeerModelFiles.BenchGguf(dtype), dtype, threads, capacity),
    };

    private void CheckAgreement()
    {
        int[] prompt = [1, .. _prompt.AsSpan(0, 15)];
        var (tokens, logits) = PeerGreedy.Run(_session, prompt, 16);
        Console.WriteLine($"// {Engine} {DType}: greedy 16 = [{string.Join(", ", tokens)}]");
        if (Greedy.TryGetValue(DType, out var other) && other.Engine != Engine)
        {
            var same = tokens.Zip(other.Tokens).TakeWhile(p => p.First == p.Second).Count();
            var maxDiff = logits.Zip(other.Logits).Max(p => Math.Abs(p.First - p.Second));
            var mean = logits.Average();
            var std = Math.Sqrt(logits.Average(v => (v - mean) * (v - mean)));
            Console.WriteLine($"// agreement {DType} {Engine} vs {other.Engine}: first {same}/16 greedy tokens equal; " +
                              $"first-step logits max |diff| {maxDiff:G3} (logit std {std:G3}), argmax {PeerGreedy.ArgMax(logits)} vs {PeerGreedy.ArgMax(other.Logits)}");
        }
        Greedy[DType] = (Engine, tokens, logits);
        if (Environment.GetEnvironmentVariable("MINIGPT4_PEERS_F64") == "1")
        {
            if (_exact is null)
            {
                using var exact = new MiniGptPeerSession(PeerModelFiles.BenchHfFolder(), TorchSharp.torch.ScalarType.Float64, Threads, 64);
                exact.Append(prompt);
                _exact = exact.LastLogits();
            }
            var d = logits.Zip(_exact).Max(p => Math.Abs(p.First - p.Second));
            Console.WriteLine($"// {Engine} {DType} vs float64 (our engine): first-step logits max |diff| {d:G3}");
        }
    }

    private static float[]? _exact;

    /// <summary>Frees the engine.</summary>
    [GlobalCleanup]
    public void Cleanup() => _session.Dispose();

    /// <summary>One token through every block and the head on top of <see cref="Context"/> cached positions (then cut back).</summary>
    [Benchmark]
    public void DecodeStep()
    {
        _session.Append([42]);
        _session.Truncate(Context);
    }

    /// <summary>A 128-token chunk on top of <see cref="Context"/> cached positions, last-position logits only (then cut back).</summary>
    [Benchmark]
    public void Prefill128()
    {
        _session.Append(_prompt);
        _session.Truncate(Context);
    }
}

/// <summary>
/// The same trained model in both engines: stories260K (HF folder for ours, its GGUF conversion for
/// llama.cpp). Setup checks 256 greedy tokens from BOS against reference.json (from llama2.c and
/// transformers) and throws on any difference; the benchmark is 64 greedy tokens (prefill BOS, 63
/// steps, argmax in C#), i.e. the per-token fixed cost of each engine on a model whose matrices are
/// negligible.
/// </summary>
[Config(typeof(PeerBenchConfig))]
public class PeerStoriesBenchmarks
{
    private static (PeerEngine Engine, float[] Logits)? StoriesLogits;
    private IPeerSession _session = null!;

    /// <summary>Engine.</summary>
    [Params(PeerEngine.MiniGpt4, PeerEngine.LlamaCpp)]
    public PeerEngine Engine { get; set; }

    /// <summary>Threads.</summary>
    [Params(1)]
    public int Threads { get; set; }

    /// <summary>Loads stories260K and checks the reference greedy tokens.</summary>
    [GlobalSetup]
    public void Setup()
    {
        _session = Engine == PeerEngine.MiniGpt4
            ? new MiniGptPeerSession(PeerModelFiles.Stories, PeerDType.F32, Threads, 512)
            : new LlamaCppPeerSession(PeerModelFiles.StoriesGguf(), PeerDType.F32, Threads, 512);
        var (prompt, expected) = PeerModelFiles.StoriesReference();
        var (tokens, _) = PeerGreedy.Run(_session, prompt, expected.Length);
        var same = tokens.Zip(expected).TakeWhile(p => p.First == p.Second).Count();
        Console.WriteLine($"// stories260K {Engine}: first {same}/{expected.Length} greedy tokens equal reference.json");
        var first = _session.Truncate0AndLogits(prompt);
        if (StoriesLogits is { } other && other.Engine != Engine)
            Console.WriteLine($"// stories260K first-step logits {Engine} vs {other.Engine}: max |diff| {first.Zip(other.Logits).Max(p => Math.Abs(p.First - p.Second)):G3}");
        StoriesLogits = (Engine, first);
        using (var exact = new MiniGptPeerSession(PeerModelFiles.Stories, TorchSharp.torch.ScalarType.Float64, Threads, 16))
        {
            var reference = exact.Truncate0AndLogits(prompt);
            Console.WriteLine($"// stories260K first-step logits {Engine} vs float64 (our engine): max |diff| {first.Zip(reference).Max(p => Math.Abs(p.First - p.Second)):G3}, max |logit| {reference.Max(Math.Abs):G3}");
        }
        if (same != expected.Length)
            throw new InvalidOperationException($"{Engine} diverges from reference.json at token {same}: " +
                                                $"[{string.Join(", ", tokens.Take(same + 3))}] vs [{string.Join(", ", expected.Take(same + 3))}]");
        _session.Truncate(0);
    }

    /// <summary>Frees the engine.</summary>
    [GlobalCleanup]
    public void Cleanup() => _session.Dispose();

    /// <summary>Prefill BOS, then 63 greedy decode steps.</summary>
    [Benchmark]
    public int Greedy64()
    {
        var (tokens, _) = PeerGreedy.Run(_session, [1], 64);
        _session.Truncate(0);
        return tokens[^1];
    }
}
