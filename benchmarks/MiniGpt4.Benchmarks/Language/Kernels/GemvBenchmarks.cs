using BenchmarkDotNet.Attributes;
using MiniGpt4.Language;
using MiniGpt4.Language.Kernels;
using static TorchSharp.torch;

namespace MiniGpt4.Benchmarks.Language.Kernels;

/// <summary>
/// One decode-time matrix-vector product <c>[1,1,in] · [out,in]ᵀ</c> with the 7B projection shapes,
/// libtorch's <c>linear</c> against <see cref="CpuGemvKernel"/>. Each call uses the next of several
/// distinct weight matrices (≥ 4 and ≥ 256 MB together, far past the 32 MB L3), so the weights come
/// from DRAM as in a real decode step; the roofline is <see cref="WeightBytes"/> / bandwidth
/// (<see cref="ReadBandwidthBenchmark"/>, <see cref="MemoryBandwidthBenchmark"/>).
/// </summary>
[Config(typeof(LlamaBenchConfig))]
public class GemvBenchmarks
{
    private Tensor[] _weights = null!;
    private Tensor _x = null!;
    private ILinearKernel _kernel = null!;
    private int _next;

    /// <summary><c>out x in</c>: q/k/v/o, gate/up, down.</summary>
    [Params("4096x4096", "11008x4096", "4096x11008")]
    public string Shape { get; set; } = "4096x4096";

    /// <summary>Weight and activation dtype.</summary>
    [Params(ScalarType.BFloat16, ScalarType.Float32)]
    public ScalarType DType { get; set; }

    /// <summary><c>torch</c>: <see cref="TorchLinearKernel"/>; <c>gemv</c>: <see cref="CpuGemvKernel"/> (on the decode worker pool).</summary>
    [Params("torch", "gemv")]
    public string Kernel { get; set; } = "torch";

    /// <summary>libtorch threads, which the kernel follows.</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>Bytes of one weight matrix (what one product must read).</summary>
    public long WeightBytes => _weights[0].NumberOfElements * _weights[0].ElementSize;

    /// <summary>Allocates the weights (random normal) and the activation row.</summary>
    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(Threads);
        var parts = Shape.Split('x').Select(long.Parse).ToArray();
        var (outFeatures, inFeatures) = (parts[0], parts[1]);
        var bytes = outFeatures * inFeatures * (DType == ScalarType.Float32 ? 4 : 2);
        var copies = (int)Math.Max(4, (256L << 20) / bytes + 1);
        using var g = new Generator(7);
        _weights = Enumerable.Range(0, copies).Select(_ => randn([outFeatures, inFeatures], generator: g).mul_(0.02).to(DType)).ToArray();
        _x = randn([1, 1, inFeatures], generator: g).to(DType);
        _kernel = Kernel switch
        {
            "torch" => TorchLinearKernel.Instance,
            "gemv" => new CpuGemvKernel(),
            _ => throw new ArgumentException(Kernel),
        };
        Console.WriteLine($"// {Shape} {DType}: {copies} matrices of {WeightBytes / 1e6:F1} MB");
    }

    /// <summary>Frees the tensors and the pool.</summary>
    [GlobalCleanup]
    public void Cleanup()
    {
        foreach (var w in _weights) w.Dispose();
        _x.Dispose();
    }

    /// <summary>One product with the next weight matrix.</summary>
    [Benchmark]
    public long MatVec()
    {
        using var guard = inference_mode();
        var w = _weights[_next];
        _next = (_next + 1) % _weights.Length;
        using var y = _kernel.Forward(_x, w);
        return y.shape[^1];
    }
}

/// <summary>
/// Read bandwidth, the bound of a matrix-vector product (it only reads the weights): libtorch's
/// <c>sum</c> over a 1 GiB float32 tensor.
/// </summary>
[Config(typeof(LlamaBenchConfig))]
public class ReadBandwidthBenchmark
{
    private Tensor _src = null!;

    /// <summary>Bytes read per call.</summary>
    public const long BytesRead = 1L << 30;

    /// <summary>libtorch threads.</summary>
    [Params(1, 2)]
    public int Threads { get; set; }

    /// <summary>Allocates and touches the buffer.</summary>
    [GlobalSetup]
    public void Setup()
    {
        set_num_threads(Threads);
        _src = rand(BytesRead / 4);
    }

    /// <summary>Frees the buffer.</summary>
    [GlobalCleanup]
    public void Cleanup() => _src.Dispose();

    /// <summary>Sums 1 GiB.</summary>
    [Benchmark]
    public float Sum1GiB()
    {
        using var s = _src.sum();
        return s.item<float>();
    }
}
