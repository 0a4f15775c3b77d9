using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using TorchSharp;
using Xunit;

namespace MiniGpt4.Tests.Weights;

public class ModuleLoaderTests
{
    private static List<(string, long[], torch.ScalarType)> Spec(IWeightSource s, Func<string, bool>? keep = null) =>
        s.Keys.Where(k => keep?.Invoke(k) ?? true).Select(k => { s.TryGetInfo(k, out var i); return (k, i.Shape, i.DType); }).ToList();

    [SkippableFact]
    public void Blip2_loads_with_t5_proj_ignored_and_every_value_arrives()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/blip2_pretrained_flant5xxl.pth"));
        using var m = TreeModule.Build(Spec(s, k => !k.StartsWith("t5_proj.", StringComparison.Ordinal)));
        var progress = new List<double>();
        ModuleLoader.Load(m, s, new LoadRules { Ignore = ["t5_proj.*"] }, new SyncProgress(progress.Add));
        Assert.Equal(1.0, progress[^1]);
        var sd = m.state_dict();
        Assert.Equal(90, sd.Count); // reference.json load_check.blip2_tensors_loaded
        foreach (var key in sd.Keys)
        {
            using var expected = s.Load(key);
            TensorAssert.Equal(expected, sd[key], key);
        }
    }

    [SkippableFact]
    public void Unexpected_key_is_named_unless_ignored()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/blip2_pretrained_flant5xxl.pth"));
        using var m = TreeModule.Build(Spec(s, k => !k.StartsWith("t5_proj.", StringComparison.Ordinal)));
        var ex = Assert.Throws<MiniGptWeightsException>(() => ModuleLoader.Load(m, s, LoadRules.Strict));
        Assert.Contains("unexpected key 't5_proj.weight'", ex.Message);
        Assert.Contains("unexpected key 't5_proj.bias'", ex.Message);
        Assert.Contains("blip2_pretrained_flant5xxl.pth", ex.Message);
        Assert.StartsWith("t5_proj.", ex.Key);
        // Nothing was copied: validation runs before any tensor is read.
        using var q = m.state_dict()["query_tokens"].clone();
        Assert.True(q.eq(-7).all().item<bool>());
    }

    [SkippableFact]
    public void Missing_key_is_named_unless_allowed_and_then_keeps_its_value()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/pretrained_minigpt4.pth"));
        var spec = Spec(s);
        spec.Add(("ln_vision.weight", new long[] { 32 }, torch.ScalarType.Float32));
        using var m = TreeModule.Build(spec);
        var ex = Assert.Throws<MiniGptWeightsException>(() => ModuleLoader.Load(m, s, LoadRules.Strict));
        Assert.Contains("missing key 'ln_vision.weight'", ex.Message);
        Assert.Contains("[32] Float32", ex.Message);
        Assert.Equal("ln_vision.weight", ex.Key);

        ModuleLoader.Load(m, s, new LoadRules { AllowMissing = ["ln_vision.*"] });
        Assert.True(m.state_dict()["ln_vision.weight"].eq(-7).all().item<bool>());
        using var w = s.Load("llama_proj.weight");
        TensorAssert.Equal(w, m.state_dict()["llama_proj.weight"]);
    }

    [SkippableFact]
    public void Shape_mismatch_names_key_and_both_shapes()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/pretrained_minigpt4.pth"));
        using var m = TreeModule.Build([
            ("llama_proj.weight", [48, 64], torch.ScalarType.Float32),
            ("llama_proj.bias", [64], torch.ScalarType.Float32)]);
        var ex = Assert.Throws<MiniGptWeightsException>(() => ModuleLoader.Load(m, s, LoadRules.Strict));
        Assert.Contains("shape mismatch for 'llama_proj.weight'", ex.Message);
        Assert.Contains("expects [48, 64] Float32", ex.Message);
        Assert.Contains("has [64, 48] Float32", ex.Message);
        Assert.Equal("llama_proj.weight", ex.Key);
        Assert.Equal(s.Description, ex.File);
    }

    [SkippableFact]
    public void Int_float_mismatch_is_refused()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/blip2_pretrained_flant5xxl.pth"));
        var spec = Spec(s, k => !k.StartsWith("t5_proj.", StringComparison.Ordinal))
            .Select(e => e.Item1.EndsWith("position_ids", StringComparison.Ordinal) ? (e.Item1, e.Item2, torch.ScalarType.Float32) : e).ToList();
        using var m = TreeModule.Build(spec);
        var ex = Assert.Throws<MiniGptWeightsException>(() => ModuleLoader.Load(m, s, new LoadRules { Ignore = ["t5_proj.*"] }));
        Assert.Contains("dtype mismatch for 'Qformer.bert.embeddings.position_ids'", ex.Message);
        Assert.Contains("expects Float32", ex.Message);
        Assert.Contains("has Int64", ex.Message);
    }

    [SkippableFact]
    public void Position_ids_can_be_ignored_when_the_module_computes_them()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/blip2_pretrained_flant5xxl.pth"));
        using var m = TreeModule.Build(Spec(s, k => !k.StartsWith("t5_proj.", StringComparison.Ordinal) && !k.EndsWith(".position_ids", StringComparison.Ordinal)));
        ModuleLoader.Load(m, s, new LoadRules { Ignore = ["t5_proj.*", "*.position_ids"] });
        Assert.Equal(89, m.state_dict().Count);
        using var q = s.Load("query_tokens");
        TensorAssert.Equal(q, m.state_dict()["query_tokens"]);
    }

    [SkippableFact]
    public void Llama_folder_loads_into_a_bf16_module_with_inv_freq_ignored()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/llama"));
        var spec = Spec(s, k => !k.EndsWith("rotary_emb.inv_freq", StringComparison.Ordinal))
            .Select(e => (e.Item1, e.Item2, torch.ScalarType.BFloat16)).ToList();
        using var m = TreeModule.Build(spec);
        var bytes = ModuleLoader.Load(m, s, new LoadRules { Ignore = ["*.rotary_emb.inv_freq"] });
        var sd = m.state_dict();
        Assert.Equal(21, sd.Count);
        Assert.Equal(sd.Values.Sum(t => t.NumberOfElements * 2), bytes);
        foreach (var key in sd.Keys)
        {
            using var f32 = s.Load(key);
            using var expected = f32.to(torch.ScalarType.BFloat16);
            Assert.Equal(torch.ScalarType.BFloat16, sd[key].dtype);
            TensorAssert.Equal(expected, sd[key], key);
        }
    }

    [SkippableFact]
    public void LoadRules_dtype_converts_an_fp32_module_first()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/pretrained_minigpt4.pth"));
        using var m = TreeModule.Build(Spec(s));
        ModuleLoader.Load(m, s, new LoadRules { DType = torch.ScalarType.BFloat16 });
        var w = m.state_dict()["llama_proj.weight"];
        Assert.Equal(torch.ScalarType.BFloat16, w.dtype);
        using var f = s.Load("llama_proj.weight", torch.ScalarType.BFloat16);
        TensorAssert.Equal(f, w);
    }

    [SkippableFact]
    public void Prefix_view_loads_a_sub_module()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/llama/pytorch_model.bin"));
        var inner = s.WithPrefix("model.");
        Assert.DoesNotContain("lm_head.weight", inner.Keys);
        Assert.Contains("embed_tokens.weight", inner.Keys);
        Assert.True(inner.TryGetInfo("norm.weight", out var info));
        Assert.Equal("norm.weight", info.Key);
        using var m = TreeModule.Build(Spec(inner, k => !k.EndsWith("inv_freq", StringComparison.Ordinal)));
        ModuleLoader.Load(m, inner, new LoadRules { Ignore = ["*.rotary_emb.inv_freq"] });
        Assert.Equal(20, m.state_dict().Count);
        using var e = s.Load("model.embed_tokens.weight");
        TensorAssert.Equal(e, m.state_dict()["embed_tokens.weight"]);
    }

    [SkippableFact]
    public void Renamed_view_maps_and_drops_keys_and_refuses_collisions()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/pretrained_minigpt4.pth"));
        var r = s.Renamed(k => k == "llama_proj.bias" ? null : k.Replace("llama_proj", "proj", StringComparison.Ordinal));
        Assert.Equal(new[] { "proj.weight" }, r.Keys);
        using var t = r.Load("proj.weight");
        Assert.Equal(new long[] { 64, 48 }, t.shape);
        Assert.Throws<MiniGptWeightsException>(() => s.Renamed(_ => "same"));
    }

    private sealed class SyncProgress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}

public class ModuleLoaderFp16Tests
{
    [Theory]
    [InlineData(torch.ScalarType.BFloat16)]
    [InlineData(torch.ScalarType.Float32)]
    [InlineData(torch.ScalarType.Float16)]
    public void Fp16_torch_checkpoint_loads_into_a_module_of_any_float_dtype(torch.ScalarType moduleDType)
    {
        // Released weights are fp16; the tiny oracle is fp32, so generate an fp16 checkpoint here.
        using var dir = new TempDir();
        var path = dir.File("fp16.pth");
        var g = new torch.Generator(3);
        using var w = torch.randn([70, 33], generator: g).to(torch.ScalarType.Float16);
        using var b = torch.randn([70], generator: g).to(torch.ScalarType.Float16);
        using var ids = torch.arange(9, dtype: torch.ScalarType.Int64).unsqueeze(0);
        TorchZipWriter.Write(path, new Dictionary<string, object?>
        {
            ["model"] = new SortedList<string, object?>
            {
                ["proj.weight"] = TorchZipWriter.Whole("0", w), ["proj.bias"] = TorchZipWriter.Whole("1", b), ["pos.position_ids"] = TorchZipWriter.Whole("2", ids),
            },
            ["epoch"] = 1L,
        }, new() { ["0"] = w.view(-1), ["1"] = b, ["2"] = ids.view(-1) });
        using var s = WeightFiles.Open(path);
        using var m = TreeModule.Build([("proj.weight", [70, 33], moduleDType), ("proj.bias", [70], moduleDType), ("pos.position_ids", [1, 9], torch.ScalarType.Int64)]);
        var progress = new List<double>();
        ModuleLoader.Load(m, s, LoadRules.Strict, new Progress(progress.Add));
        var sd = m.state_dict();
        using var ew = w.to(moduleDType);
        using var eb = b.to(moduleDType);
        TensorAssert.Equal(ew, sd["proj.weight"]);
        TensorAssert.Equal(eb, sd["proj.bias"]);
        TensorAssert.Equal(ids, sd["pos.position_ids"]);
        Assert.Equal(progress.Order(), progress);
        Assert.Equal(1.0, progress[^1]);
    }

    [Fact]
    public void Meta_tensors_are_refused_instead_of_silently_staying_empty()
    {
        using var dir = new TempDir();
        var path = dir.File("w.safetensors");
        using var w = torch.ones(4, 3);
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor> { ["weight"] = w });
        using var s = WeightFiles.Open(path);
        using var lin = torch.nn.Linear(3, 4, hasBias: false, device: torch.META);
        var ex = Assert.Throws<MiniGptWeightsException>(() => ModuleLoader.Load(lin, s, LoadRules.Strict));
        Assert.Contains("meta device", ex.Message);
    }

    [Theory]
    [InlineData("*.rotary_emb.inv_freq", "model.layers.0.self_attn.rotary_emb.inv_freq", true)]
    [InlineData("*.rotary_emb.inv_freq", "rotary_emb.inv_freq", false)]
    [InlineData("t5_proj.*", "t5_proj.weight", true)]
    [InlineData("t5_proj.*", "Qformer.t5_proj.weight", false)]
    [InlineData("*.position_ids", "Qformer.bert.embeddings.position_ids", true)]
    [InlineData("a*b*c", "axxbyyc", true)]
    [InlineData("a*b*c", "axxbyy", false)]
    [InlineData("exact", "exact", true)]
    [InlineData("exact", "exactly", false)]
    [InlineData("*", "", true)]
    public void Glob_patterns_match_whole_keys(string pattern, string key, bool expected) =>
        Assert.Equal(expected, LoadRules.IsMatch(pattern, key));

    private sealed class Progress(Action<double> report) : IProgress<double>
    {
        public void Report(double value) => report(value);
    }
}

public class FakeSourceTests
{
    /// <summary>A minimal in-memory source, as model tests may write: only the required members.</summary>
    private sealed class InMemorySource(Dictionary<string, torch.Tensor> tensors) : IWeightSource
    {
        public string Description => "in-memory";
        public IReadOnlyCollection<string> Keys => tensors.Keys;
        public bool TryGetInfo(string key, out TensorInfo info)
        {
            info = tensors.TryGetValue(key, out var t) ? new TensorInfo(key, t.dtype, t.shape) : null!;
            return info is not null;
        }
        public torch.Tensor Load(string key, torch.ScalarType? dtype = null, torch.Device? device = null) =>
            tensors[key].to(dtype ?? tensors[key].dtype, device ?? torch.CPU, copy: true);
        public void Dispose() { }
    }

    [Fact]
    public void ModuleLoader_works_with_a_source_that_only_implements_Load()
    {
        using var w = torch.arange(12, dtype: torch.ScalarType.Float32).reshape(4, 3);
        using var src = new InMemorySource(new() { ["weight"] = w });
        using var lin = EmptyInit.Linear(3, 4, hasBias: false, torch.ScalarType.BFloat16);
        ModuleLoader.Load(lin, src, LoadRules.Strict);
        using var expected = w.to(torch.ScalarType.BFloat16);
        TensorAssert.Equal(expected, lin.weight);
    }
}
