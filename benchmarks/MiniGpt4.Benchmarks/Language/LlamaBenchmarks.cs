using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using BenchmarkDotNet.Toolchains.InProcess.Emit;
using MiniGpt4.Language;
using static TorchSharp.torch;

namespace MiniGpt4.Benchmarks.Language;

/// <summary>In-process ShortRun (no rebuild per case), one libtorch thread for stable numbers on a shared machine.</summary>
public sealed class LlamaBenchConfig : ManualConfig
{
    /// <summary>Creates the config.</summary>
    public LlamaBenchConfig() => AddJob(Job.ShortRun.WithToolchain(InProcessEmitToolchain.Instance));
}

/// <summary>
/// One decode step and one prompt prefill of a generated LLaMA with the real 7B layer shape
/// (hidden 4096, 32 heads, intermediate 11008, vocab 32000; <see cref="Layers"/> blocks) with random
/// weights. The decode step streams every projection and the output head once, so its roofline is
/// <see cref="WeightBytes"/> / memory bandwidth (see <see cref="MemoryBandwidthBenchmark"/>);
/// docs/language-model.md puts the two side by side.
/// </summary>
[Config(typeof(LlamaBenchConfig))]
public class LlamaBenchmarks
{
    private const int Context = 256;
    private LlamaForCausalLM _lm = null!;
    private LlamaSession _session = null!;
    private int[] _prompt = null!;

    /// <summary>Parameter and activation dtype.</summary>
    [Params(ScalarType.Float32, ScalarType.BFloat16)]
    public ScalarType DType { get; set; }

    /// <summary>Decoder blocks.</summary>
    [Params(1)]
    public int Layers { get; set; }

    /// <summary>Prompt length of the prefill benchmark.</summary>
    public const int PromptTokens = 128;

    /// <summary>Bytes a decode step must read: every projection plus the output head (the embedding row is negligible).</summary>
    public long WeightBytes => _lm.Projections.Sum(p => p.Weight.NumberOfElements * p.Weight.ElementSize);

    /// <summary>Builds the model with random weights and a session holding <c>Context</c> positions.</summary>
    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(1);
        _lm = BenchModels.RandomLlama(BenchModels.SevenBShape(Layers), DType);
        _prompt = BenchModels.Prompt(PromptTokens);
        _session = _lm.CreateSession(Context + PromptTokens + 1);
        BenchModels.Fill(_session, _prompt, Context);
        Console.WriteLine($"// {DType}, {Layers} layer(s): decode weight bytes {WeightBytes} ({WeightBytes / 1e6:F1} MB)");
    }

    /// <summary>Frees the session and the model.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _session.Dispose();
        _lm.Dispose();
    }

    /// <summary>One token through every block and the head, on top of <c>Context</c> cached positions.</summary>
    [Benchmark]
    public float DecodeStep()
    {
        using var logits = _session.Step([42]);
        _session.Truncate(Context);
        return logits.data<float>()[0];
    }

    /// <summary>
    /// Only the matrix-vector products of a decode step (every projection and the head on one
    /// position): the floor the current kernel sets; <see cref="DecodeStep"/> minus this is everything else.
    /// </summary>
    [Benchmark]
    public float DecodeProjectionsOnly()
    {
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        var sum = 0f;
        foreach (var p in _lm.Projections)
        {
            var x = ones([1, 1, p.Weight.shape[1]], DType);
            sum += p.call(x).shape[^1];
        }
        return sum;
    }

    /// <summary>A 128-token prompt in one pass on top of <c>Context</c> cached positions (last-position logits only).</summary>
    [Benchmark]
    public float Prefill128()
    {
        using var logits = _session.PrefillTokens(_prompt);
        _session.Truncate(Context);
        return logits.data<float>()[0];
    }
}

/// <summary>The machine's memory bandwidth as libtorch sees it: copying a 1 GiB float32 tensor (reads 1 GiB, writes 1 GiB).</summary>
[Config(typeof(LlamaBenchConfig))]
public class MemoryBandwidthBenchmark
{
    private Tensor _src = null!, _dst = null!;

    /// <summary>Bytes read plus bytes written per copy.</summary>
    public const long BytesMoved = 2L << 30;

    /// <summary>Allocates and touches both buffers.</summary>
    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(1);
        _src = rand(256L << 20);
        _dst = zeros(256L << 20);
    }

    /// <summary>Frees the buffers.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _src.Dispose();
        _dst.Dispose();
    }

    /// <summary>One 1 GiB → 1 GiB copy.</summary>
    [Benchmark]
    public void Copy1GiB() => _dst.copy_(_src);
}
