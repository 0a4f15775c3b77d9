using System.Diagnostics;
using System.Text.Json.Nodes;
using MiniGpt4.Abstractions;
using MiniGpt4.Cli.Synth;
using MiniGpt4.Language;
using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using Xunit;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>The CLI's synth and bench verbs: the files synth writes load and answer, and bench reports its documented keys.</summary>
public class CliSynthBenchTests
{
    private static Task<(int Exit, string Stdout, string Stderr)> RunAsync(params string[] args) => CliProcess.RunAsync(null, args);

    [Fact]
    public async Task Synth_vicuna7b_llm_only_loads_generates_and_generate_json_keeps_its_timings()
    {
        using var dir = new TempDir();
        var (exit, stdout, stderr) = await RunAsync("synth", "--preset", "vicuna-7b", "--llm-only", "--layers", "1", "--dtype", "bfloat16", "--out", dir.Path);
        Assert.True(exit == 0, stderr);
        Assert.Equal(dir.File("minigpt4.json"), stdout.Trim());
        Assert.Contains("100%", stderr);
        Assert.True(File.Exists(dir.File("model.safetensors")));

        using (var pipeline = await MiniGptPipeline.LoadAsync(dir.Path, new MiniGptLoadOptions { DType = MiniGptDType.BFloat16 }))
        {
            Assert.Null(pipeline.VisionEncoder);
            Assert.Equal(32001, pipeline.LanguageModel.VocabSize);
            var ids = pipeline.LanguageModel.Tokenize("What is in the picture?", addBos: true);
            var options = GenerationOptions.Greedy with { MaxNewTokens = 3, MinNewTokens = 3, UseTemplateStops = false };
            var tokens = new List<int>();
            await foreach (var u in pipeline.GenerateAsync(new PromptSequence().AddTokens(ids), options)) tokens.AddRange(u.TokenIds);
            Assert.Equal(3, tokens.Count);
        }

        // generate --format json on the same model: timings.decode_tokens_per_s stays, --threads is accepted.
        (exit, stdout, stderr) = await RunAsync("generate", "--model", dir.Path, "--raw", "--prompt", "Hello", "--max-new-tokens", "3",
            "--min-new-tokens", "3", "--temperature", "0", "--no-template-stops", "--threads", "1", "--format", "json");
        Assert.True(exit == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        Assert.Equal(3, json["generated_tokens"]!.GetValue<int>());
        Assert.True(json["timings"]!["decode_tokens_per_s"]!.GetValue<double>() > 0);
    }

    [Theory]
    [InlineData("vicuna-7b")]
    [InlineData("llama2-7b")]
    [InlineData("minigptv2")]
    public async Task Synth_with_vision_loads_and_answers_about_an_image(string preset)
    {
        using var dir = new TempDir();
        var (exit, stdout, stderr) = await RunAsync("synth", "--preset", preset, "--layers", "1", "--vision-layers", "1", "--out", dir.Path, "--shard-mb", "300", "--seed", "7");
        Assert.True(exit == 0, stderr);
        var manifest = stdout.Trim();
        var p = SynthPreset.Get(preset);
        Assert.True(File.Exists(dir.File(p.ProjectionFile)));
        Assert.True(File.Exists(Path.Combine(dir.Path, p.LlmFolder, "model.safetensors.index.json"))); // sharded at 300 MB

        using var pipeline = await MiniGptPipeline.LoadAsync(manifest, new MiniGptLoadOptions { DType = MiniGptDType.BFloat16 });
        Assert.NotNull(pipeline.VisionEncoder);
        var rgb = new byte[64 * 48 * 3];
        for (var i = 0; i < rgb.Length; i++) rgb[i] = (byte)(i * 31);
        using var session = pipeline.CreateSession();
        session.AddImage(ImageInput.FromRgb(64, 48, rgb));
        var answer = await session.AskAsync("What is this?", GenerationOptions.Greedy with { MaxNewTokens = 2, MinNewTokens = 2, UseTemplateStops = false });
        Assert.Equal(2, answer.Usage.GeneratedTokens);
    }

    /// <summary>Every preset at its full size, checked against the loader's header validation without writing a byte of data.</summary>
    [Theory]
    [InlineData("vicuna-7b")]
    [InlineData("vicuna-13b")]
    [InlineData("llama2-7b")]
    [InlineData("minigptv2")]
    public void Synth_plans_match_what_the_loader_expects_at_the_released_sizes(string preset)
    {
        var p = SynthPreset.Get(preset);
        var request = new SynthRequest(p, "/nonexistent");
        var manifest = ModelManifest.Parse(ModelSynthesizer.Manifest(request).ToJsonString(), "/nonexistent");
        var s = p.Llm;
        var config = new LlamaConfig(s.Hidden, s.Intermediate, s.Layers, s.Heads, s.KvHeads, s.RmsNormEps, s.RopeTheta, s.MaxPositions, s.Vocab, TieWordEmbeddings: false);
        using var llm = new PlanSource(TensorPlan.Llm(s, s.Layers));
        using var vision = new PlanSource(TensorPlan.Vision(EvaVitG.StoredBlocks));
        using var blip2 = p.HasQFormer ? new PlanSource(TensorPlan.QFormer()) : null;
        // The loader's checks against the checkpoints (ModelFiles), on headers alone.
        config.CheckAgainst(llm, "synth plan");
        manifest.Vision.ToConfig().CheckAgainst(MiniGpt4.Vision.EvaVitNames.ToLavis(vision), manifest.Where);
        if (blip2 is not null) manifest.ReadQFormerConfig()!.CheckAgainst(MiniGpt4.Bridge.QFormerNames.ToLavis(blip2), manifest.Where);
        var projection = TensorPlan.Projection(p, s.Layers);
        Assert.Equal([s.Hidden, p.HasQFormer ? 768L : 4 * 1408L], projection.Single(t => t.Key == "llama_proj.weight").Shape);
        Assert.Equal(p.LoraRank is null ? 0 : 4 * s.Layers, projection.Count(t => t.Key.Contains("lora_", StringComparison.Ordinal)));
        var bytes = TensorPlan.Llm(s, s.Layers).Sum(t => t.Elements) * 2;
        Assert.InRange(bytes / 1e9, preset == "vicuna-13b" ? 26.0 : 13.4, preset == "vicuna-13b" ? 26.1 : 13.5);
    }

    [Fact]
    public void Written_checkpoints_read_back_through_the_library_with_the_generated_values()
    {
        using var dir = new TempDir();
        var tensors = new List<TensorSpec> { new("a.weight", [3, 5000]), new("a.norm", [7], Init.Norm), new("b", [2, 3, 4]) };
        foreach (var dtype in new[] { SynthDType.Float16, SynthDType.BFloat16, SynthDType.Float32 })
        {
            var data = new TensorData(new RandomWeights(11, dtype), new SynthProgress(0, null));
            var pth = dir.File($"ckpt-{dtype}.pth");
            var st = dir.File($"ckpt-{dtype}.safetensors");
            TorchCheckpoint.Write(pth, tensors, data, underModelKey: true);
            SafetensorsFiles.Write(st, tensors, data);
            using var fromZip = WeightFiles.Open(pth);
            using var fromSt = WeightFiles.Open(st);
            Assert.Equal(tensors.Select(t => t.Key), fromZip.Keys);
            foreach (var t in tensors)
            {
                var expected = new byte[t.Elements * dtype.Size()];
                new RandomWeights(11, dtype).Fill(t, 0, expected);
                using var a = fromZip.Load(t.Key);
                using var b = fromSt.Load(t.Key);
                Assert.Equal(t.Shape, a.shape);
                Assert.Equal(expected, a.bytes.ToArray());
                Assert.Equal(expected, b.bytes.ToArray());
                if (t.Init == Init.Norm) Assert.InRange(a.to(ScalarType.Float32).mean().item<float>(), 0.8f, 1.2f);
            }
        }
    }

    [Fact]
    public void Random_weights_depend_only_on_seed_key_and_position()
    {
        var t = new TensorSpec("x", [5 * RandomWeights.BlockElements + 3]);
        var whole = new byte[t.Elements * 2];
        new RandomWeights(5, SynthDType.BFloat16).Fill(t, 0, whole);
        var tail = new byte[whole.Length - 2 * RandomWeights.BlockElements * 2];
        new RandomWeights(5, SynthDType.BFloat16).Fill(t, 2 * RandomWeights.BlockElements, tail);
        Assert.Equal(whole.AsSpan(2 * RandomWeights.BlockElements * 2).ToArray(), tail);
        var other = new byte[whole.Length];
        new RandomWeights(6, SynthDType.BFloat16).Fill(t, 0, other);
        Assert.NotEqual(whole, other);
        var renamed = new byte[whole.Length];
        new RandomWeights(5, SynthDType.BFloat16).Fill(t with { Key = "y" }, 0, renamed);
        Assert.NotEqual(whole, renamed);
    }

    [Fact]
    public void The_synthetic_tokenizer_has_llama_s_special_ids_and_round_trips_text()
    {
        using var dir = new TempDir();
        File.WriteAllBytes(dir.File("tokenizer.model"), SyntheticTokenizer.Build());
        var tok = MiniGptTokenizer.Load(dir.File("tokenizer.model"));
        var ids = tok.Encode("Hello ### world 42 é", addBos: true);
        Assert.Equal(1, ids[0]);
        Assert.All(ids, id => Assert.InRange(id, 0, SyntheticTokenizer.Pieces - 1));
        Assert.Equal("Hello ### world 42 é", tok.Decode(ids));
    }

    [Theory]
    [InlineData("--preset", "synth", "--preset", "vicuna-8b", "--out", "x")]
    [InlineData("--layers", "synth", "--preset", "vicuna-7b", "--out", "x", "--layers", "0")]
    [InlineData("--dtype", "synth", "--preset", "vicuna-7b", "--out", "x", "--dtype", "int8")]
    [InlineData("--frobnicate", "synth", "--preset", "vicuna-7b", "--out", "x", "--frobnicate")]
    [InlineData("--preset", "synth", "--out", "x")]
    [InlineData("--context", "bench", "--model", "x", "--context", "16,zero")]
    [InlineData("--runs", "bench", "--model", "x", "--runs", "0")]
    [InlineData("did you mean '--concurrency'", "bench", "--model", "x", "--concurency", "2")]
    [InlineData("--format", "bench", "--model", "x", "--format", "yaml")]
    [InlineData("No --model given", "bench")]
    public async Task Bad_synth_and_bench_command_lines_exit_2_naming_the_option(string named, params string[] args)
    {
        var (exit, stdout, stderr) = await RunAsync(args);
        Assert.Equal(2, exit);
        Assert.Equal("", stdout);
        Assert.Contains(named, stderr);
    }

    [Theory]
    [InlineData("synth", "--preset", "--llm-only", "--vision-layers", "--tokenizer", "--seed")]
    [InlineData("bench", "--threads", "--context", "--concurrency", "--runs", "--format")]
    public async Task Synth_and_bench_have_help(string verb, params string[] options)
    {
        var (exit, stdout, _) = await RunAsync(verb, "--help");
        Assert.Equal(0, exit);
        foreach (var o in options) Assert.Contains(o, stdout);
        (exit, stdout, _) = await RunAsync("--help");
        Assert.Contains(verb, stdout);
    }

    [SkippableFact]
    public async Task Bench_reports_every_documented_key_as_json()
    {
        var model = Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json");
        var (exit, stdout, stderr) = await RunAsync("bench", "--model", model, "--threads", "1", "--context", "8,20", "--concurrency", "1,2",
            "--runs", "2", "--new-tokens", "3", "--dtype", "float32", "--format", "json");
        Assert.True(exit == 0, stderr);
        var j = JsonNode.Parse(stdout)!;
        Assert.True(j["read_bandwidth_gbs"]!.GetValue<double>() > 0);
        Assert.True(j["gemm_bf16_gflops"]!.GetValue<double>() > 0);
        Assert.True(j["load_seconds"]!.GetValue<double>() > 0);
        Assert.True(j["first_touch_gbs"]!.GetValue<double>() > 0);
        Assert.True(j["load_fraction_of_first_touch"]!.GetValue<double>() > 0);
        Assert.True(j["image_encode_ms"]!.GetValue<double>() > 0);
        Assert.Equal(2, j["image_encode"]!["ms"]!["runs"]!.AsArray().Count);
        Assert.Equal([8, 20], j["prefill"]!.AsArray().Select(p => p!["context"]!.GetValue<int>()));
        var decode = j["decode"]!.AsArray();
        Assert.Equal(4, decode.Count);
        Assert.Equal([1, 2, 1, 2], decode.Select(d => d!["concurrency"]!.GetValue<int>()));
        foreach (var d in decode)
        {
            Assert.True(d!["tokens_per_s"]!.GetValue<double>() > 0);
            Assert.True(d["ms_per_token"]!.GetValue<double>() > 0);
            Assert.True(d["fraction_of_bandwidth"]!.GetValue<double>() > 0);
            // K = 1: the library's own rate; K = 2: tokens while both decoded (0 when the two never overlapped).
            Assert.True(d["all_decoding_tokens_per_s"]!.GetValue<double>() >= 0);
            var s = d["tokens_per_s_stats"]!;
            Assert.True(s["min"]!.GetValue<double>() <= s["median"]!.GetValue<double>() && s["median"]!.GetValue<double>() <= s["max"]!.GetValue<double>());
        }
    }

    /// <summary>A weight source made from a plan: headers only (what the loader's validation reads).</summary>
    private sealed class PlanSource(IEnumerable<TensorSpec> tensors) : IWeightSource
    {
        private readonly Dictionary<string, TensorInfo> _infos = tensors.ToDictionary(t => t.Key, t => new TensorInfo(t.Key, ScalarType.Float16, t.Shape));

        public string Description => "synth plan";
        public IReadOnlyCollection<string> Keys => _infos.Keys;
        public bool TryGetInfo(string key, out TensorInfo info) => _infos.TryGetValue(key, out info!);
        public Tensor Load(string key, ScalarType? dtype = null, Device? device = null) => throw new NotSupportedException("headers only");
        public void Dispose() { }
    }
}
