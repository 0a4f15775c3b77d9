using System.Diagnostics;
using System.Globalization;
using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Engines;
using BenchmarkDotNet.Jobs;
using MiniGpt4.Weights;
using TorchSharp;
using TorchSharp.Modules;

namespace MiniGpt4.Benchmarks.Weights;

/// <summary>
/// Loads a generated ~2 GB fp16 safetensors checkpoint (a LLaMA-shaped model: embedding, 19 blocks of
/// attention + MLP linears, lm_head) into a model built with <see cref="EmptyInit"/>, and reports
/// resident memory: VmHWM (peak RSS, mapped pages included) is reset through /proc/self/clear_refs
/// right before each load. Every measurement runs in a fresh process (cold start, one iteration per
/// launch) because freed tensor memory stays in the allocator and would pollute the next one.
/// Run: <c>dotnet run -c Release --project benchmarks/MiniGpt4.Benchmarks -- --filter '*WeightLoading*'</c>.
/// Each measurement is printed as a <c>[weights-memory]</c> line and appended to
/// <c>$TMPDIR/minigpt4-weights-memory.txt</c>. The generated checkpoint stays in
/// <c>$TMPDIR/minigpt4-weights-bench/</c> (2.2 GB) so launches share it: delete it afterwards.
/// </summary>
[Config(typeof(Cfg))]
public class WeightLoadingBenchmarks
{
    private sealed class Cfg : ManualConfig
    {
        public Cfg() => AddJob(Job.Default.WithStrategy(RunStrategy.ColdStart).WithLaunchCount(3).WithWarmupCount(0)
            .WithIterationCount(1));
    }

    private const long Hidden = 2048, Intermediate = 5504, Vocab = 32000;
    private const int Layers = 19;
    private string _dir = "";

    private string _file = "";

    /// <summary>Generates the checkpoint (fp16, tensor by tensor) once.</summary>
    [GlobalSetup]
    public void Setup()
    {
        torch.set_num_threads(2);
        _dir = Path.Combine(Path.GetTempPath(), "minigpt4-weights-bench");
        Directory.CreateDirectory(_dir);
        _file = Path.Combine(_dir, "model.safetensors");
        if (!File.Exists(_file))
        {
            // Written under a temporary name and renamed, so a crashed launch never leaves half a file.
            var seed = 0UL;
            SafetensorsWriter.Write(_file, Shapes().Select(s => (s.Key, torch.ScalarType.Float16, s.Shape,
                (Func<torch.Tensor>)(() => { var g = new torch.Generator(++seed); using var r = torch.randn(s.Shape, generator: g); return r.to(torch.ScalarType.Float16); }))));
        }
    }

    internal static IEnumerable<(string Key, long[] Shape)> Shapes()
    {
        yield return ("model.embed_tokens.weight", [Vocab, Hidden]);
        for (var i = 0; i < Layers; i++)
        {
            foreach (var p in new[] { "q_proj", "k_proj", "v_proj", "o_proj" }) yield return ($"model.layers.{i}.self_attn.{p}.weight", [Hidden, Hidden]);
            yield return ($"model.layers.{i}.mlp.gate_proj.weight", [Intermediate, Hidden]);
            yield return ($"model.layers.{i}.mlp.up_proj.weight", [Intermediate, Hidden]);
            yield return ($"model.layers.{i}.mlp.down_proj.weight", [Hidden, Intermediate]);
        }
        yield return ("model.norm.weight", [Hidden]);
        yield return ("lm_head.weight", [Vocab, Hidden]);
    }

    /// <summary>fp16 file into a bf16 model (converted in 32 MB chunks).</summary>
    [Benchmark]
    public long Fp16FileToBf16Model() => Measure("fp16 file -> bf16 model", torch.ScalarType.BFloat16, viaLoad: false);

    /// <summary>fp16 file into an fp16 model (read straight into the parameters).</summary>
    [Benchmark(Baseline = true)]
    public long Fp16FileToFp16Model() => Measure("fp16 file -> fp16 model", torch.ScalarType.Float16, viaLoad: false);

    /// <summary>For comparison: <c>IWeightSource.Load</c> (mmap views) then <c>copy_</c> into the parameters, the naive route.</summary>
    [Benchmark]
    public long NaiveLoadThenCopy() => Measure("naive: Load (mmap) + copy_", torch.ScalarType.Float16, viaLoad: true);

    /// <summary>For comparison: building the same model with TorchSharp's initialising nn.Linear (no loading).</summary>
    [Benchmark]
    public long ConstructWithNnLinear()
    {
        ResetPeak();
        var before = Status("VmRSS");
        var sw = Stopwatch.StartNew();
        using var model = new Model(torch.ScalarType.BFloat16, empty: false);
        var bytes = model.state_dict().Values.Sum(t => t.NumberOfElements * t.ElementSize);
        Report("construct with nn.Linear init (bf16)", before, bytes, sw.Elapsed, Status("VmRSS"));
        return bytes;
    }

    private long Measure(string name, torch.ScalarType dtype, bool viaLoad)
    {
        GC.Collect();
        ResetPeak();
        var before = Status("VmRSS");
        var sw = Stopwatch.StartNew();
        using var model = new Model(dtype, empty: true);
        var afterConstruct = Status("VmRSS");
        using var source = WeightFiles.Open(_file);
        long bytes;
        if (!viaLoad)
        {
            bytes = ModuleLoader.Load(model, source, LoadRules.Strict);
        }
        else
        {
            bytes = 0;
            using var noGrad = torch.no_grad();
            foreach (var (key, target) in model.state_dict())
            {
                using var t = source.Load(key);
                target.copy_(t);
                bytes += target.NumberOfElements * target.ElementSize;
            }
        }
        Report(name, before, bytes, sw.Elapsed, afterConstruct);
        return bytes;
    }

    private static void Report(string name, long rssBefore, long finalBytes, TimeSpan elapsed, long rssAfterConstruct)
    {
        var peak = Status("VmHWM");
        var line = string.Create(CultureInfo.InvariantCulture,
            $"[weights-memory] {name}: final {finalBytes / 1e9:F3} GB, RSS before {rssBefore / 1e9:F3} GB, after construction {rssAfterConstruct / 1e9:F3} GB, " +
            $"VmHWM {peak / 1e9:F3} GB, VmHWM/final {(double)peak / finalBytes:F3}, (VmHWM-before)/final {(double)(peak - rssBefore) / finalBytes:F3}, {elapsed.TotalSeconds:F2} s");
        Console.WriteLine(line);
        File.AppendAllText(Path.Combine(Path.GetTempPath(), "minigpt4-weights-memory.txt"), line + Environment.NewLine);
    }

    private static void ResetPeak()
    {
        try { File.WriteAllText("/proc/self/clear_refs", "5"); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }

    private static long Status(string field)
    {
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field + ":", StringComparison.Ordinal))
                return long.Parse(line.AsSpan(field.Length + 1).Trim().TrimEnd("kB").Trim(), CultureInfo.InvariantCulture) * 1024;
        return 0;
    }

    private sealed class Block : torch.nn.Module
    {
        private readonly ModuleDict<Linear> self_attn = new();
        private readonly ModuleDict<Linear> mlp = new();

        public Block(torch.ScalarType dtype, bool empty) : base("Block")
        {
            Linear L(long i, long o) => empty ? EmptyInit.Linear(i, o, false, dtype) : torch.nn.Linear(i, o, false, dtype: dtype);
            foreach (var p in new[] { "q_proj", "k_proj", "v_proj", "o_proj" }) self_attn.Add((p, L(Hidden, Hidden)));
            mlp.Add(("gate_proj", L(Hidden, Intermediate)));
            mlp.Add(("up_proj", L(Hidden, Intermediate)));
            mlp.Add(("down_proj", L(Intermediate, Hidden)));
            RegisterComponents();
        }
    }

    private sealed class Inner : torch.nn.Module
    {
        private readonly MiniGpt4.Language.TokenEmbedding embed_tokens;
        private readonly ModuleList<Block> layers = new();
        private readonly NormHolder norm;

        public Inner(torch.ScalarType dtype, bool empty) : base("Inner")
        {
            embed_tokens = new MiniGpt4.Language.TokenEmbedding("embed_tokens", Vocab, Hidden, dtype, torch.CPU);
            for (var i = 0; i < Layers; i++) layers.Add(new Block(dtype, empty));
            norm = new NormHolder(EmptyInit.Parameter([Hidden], dtype));
            RegisterComponents();
        }
    }

    private sealed class NormHolder : torch.nn.Module
    {
        private readonly Parameter weight;
        public NormHolder(Parameter w) : base("Norm") { weight = w; RegisterComponents(); }
    }

    private sealed class Model : torch.nn.Module
    {
        private readonly Inner model;
        private readonly Linear lm_head;

        public Model(torch.ScalarType dtype, bool empty) : base("Model")
        {
            model = new Inner(dtype, empty);
            lm_head = empty ? EmptyInit.Linear(Hidden, Vocab, false, dtype) : torch.nn.Linear(Hidden, Vocab, false, dtype: dtype);
            RegisterComponents();
        }
    }
}
