using MiniGpt4.Benchmarks.Language;
using BenchmarkDotNet.Attributes;
using MiniGpt4.Language;
using MiniGpt4.Language.Kernels;
using static TorchSharp.torch;

namespace MiniGpt4.Benchmarks.Language.Kernels;

/// <summary>
/// A whole decode step of the 7B-shaped one-block LLaMA of <see cref="LlamaBenchmarks"/> (hidden 4096,
/// 32 heads, intermediate 11008, untied 32000-row head, 256 cached positions) with libtorch's linear
/// or <see cref="CpuGemvKernel"/> on every projection. Roofline: <see cref="WeightBytes"/> / bandwidth.
/// </summary>
[Config(typeof(LlamaBenchConfig))]
public class GemvDecodeStepBenchmarks
{
    private const int Context = 256;
    private LlamaForCausalLM _lm = null!;
    private LlamaSession _session = null!;

    /// <summary>Parameter and activation dtype.</summary>
    [Params(ScalarType.BFloat16, ScalarType.Float32)]
    public ScalarType DType { get; set; }

    /// <summary><c>torch</c> or <c>gemv</c>.</summary>
    [Params("torch", "gemv")]
    public string Kernel { get; set; } = "torch";

    /// <summary>libtorch threads (the kernel follows them).</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>Bytes a decode step must read: every projection plus the output head.</summary>
    public long WeightBytes => _lm.Projections.Sum(p => p.Weight.NumberOfElements * p.Weight.ElementSize);

    /// <summary>Builds the model with random weights and a session holding <c>Context</c> positions.</summary>
    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(Threads);
        _lm = BenchModels.RandomLlama(BenchModels.SevenBShape(1), DType);
        _lm.LinearKernel = Kernel == "gemv" ? new CpuGemvKernel() : TorchLinearKernel.Instance;
        _session = _lm.CreateSession(Context + 1);
        BenchModels.Fill(_session, BenchModels.Prompt(128), Context);
        Console.WriteLine($"// {DType} {Kernel}: decode weight bytes {WeightBytes} ({WeightBytes / 1e6:F1} MB)");
    }

    /// <summary>Frees the session and the model.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        _session.Dispose();
        _lm.Dispose();
    }

    /// <summary>One token through the block and the head, on top of <c>Context</c> cached positions.</summary>
    [Benchmark]
    public float DecodeStep()
    {
        using var logits = _session.Step([42]);
        _session.Truncate(Context);
        return logits.data<float>()[0];
    }
}

/// <summary>
/// The same decode step, libtorch and <see cref="CpuGemvKernel"/> interleaved on one model and cache:
/// each invocation times one libtorch step and one kernel step with a stopwatch, so both see the same
/// background load (this machine is shared); <see cref="Cleanup"/> prints min / median per kernel.
/// BenchmarkDotNet's own mean is the sum of the two.
/// </summary>
[Config(typeof(LlamaBenchConfig))]
public class GemvDecodeStepAbBenchmark
{
    private const int Context = 256;
    private LlamaForCausalLM _lm = null!;
    private LlamaSession _session = null!;
    private readonly ILinearKernel _gemv = new CpuGemvKernel();
    private readonly List<double> _torchMs = [], _gemvMs = [];

    /// <summary>Parameter and activation dtype.</summary>
    [Params(ScalarType.BFloat16, ScalarType.Float32)]
    public ScalarType DType { get; set; }

    /// <summary>libtorch threads (the kernel follows them).</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>Builds the one-block 7B-shaped model with random weights and 256 cached positions.</summary>
    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(Threads);
        _lm = BenchModels.RandomLlama(BenchModels.SevenBShape(1), DType);
        _session = _lm.CreateSession(Context + 1);
        BenchModels.Fill(_session, BenchModels.Prompt(128), Context);
    }

    /// <summary>Prints the per-kernel times and frees the model.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        static string Stats(List<double> t)
        {
            var s = t.Order().ToList();
            return s.Count == 0 ? "-" : $"min {s[0]:F1} ms, median {s[s.Count / 2]:F1} ms, max {s[^1]:F1} ms (n={s.Count})";
        }
        Console.WriteLine($"// A/B {DType} threads={Threads}: torch {Stats(_torchMs)}; gemv {Stats(_gemvMs)}");
        _session.Dispose();
        _lm.Dispose();
    }

    private double Step(ILinearKernel kernel)
    {
        _lm.LinearKernel = kernel;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using (_session.Step([42])) { }
        var ms = clock.Elapsed.TotalMilliseconds;
        _session.Truncate(Context);
        return ms;
    }

    /// <summary>One libtorch step, then one kernel step.</summary>
    [Benchmark]
    public void TorchThenGemv()
    {
        _torchMs.Add(Step(TorchLinearKernel.Instance));
        _gemvMs.Add(Step(_gemv));
    }
}
