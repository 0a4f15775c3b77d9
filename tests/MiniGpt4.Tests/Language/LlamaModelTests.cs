using MiniGpt4.Language;
using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using Xunit;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language;

/// <summary>Configuration parsing and the module's key layout.</summary>
public sealed class LlamaModelTests
{
    private const string Vicuna7B = """
        {"architectures":["LLaMAForCausalLM"],"bos_token_id":0,"eos_token_id":1,"hidden_act":"silu","hidden_size":4096,
         "intermediate_size":11008,"initializer_range":0.02,"max_sequence_length":2048,"model_type":"llama",
         "num_attention_heads":32,"num_hidden_layers":32,"pad_token_id":-1,"rms_norm_eps":1e-06,
         "torch_dtype":"float16","transformers_version":"4.28.0.dev0","use_cache":true,"vocab_size":32001}
        """;

    private static LlamaConfig Parse(string json) => LlamaConfig.FromJson(ConfigJson.Parse(json, "config.json"));

    [Fact]
    public void Vicuna_v0_config_parses_with_defaults_and_its_wrong_special_ids()
    {
        var c = Parse(Vicuna7B);
        Assert.Equal(4096, c.HiddenSize);
        Assert.Equal(32, c.NumKeyValueHeads);          // defaults to the head count
        Assert.Equal(10000.0, c.RopeTheta);            // default theta
        Assert.Equal(2048, c.MaxPositionEmbeddings);   // from max_sequence_length, Vicuna v0's spelling
        Assert.Equal(4096, Parse(Vicuna7B.Replace("\"max_sequence_length\":2048", "\"max_sequence_length\":4096", StringComparison.Ordinal)).MaxPositionEmbeddings);
        Assert.Equal(32001, c.VocabSize);              // FastChat's extra [PAD] row
        Assert.False(c.TieWordEmbeddings);
        Assert.Equal(0, c.BosTokenId);                 // as declared (wrong: the tokenizer's BOS is 1)
        Assert.Equal(1, c.EosTokenId);
        Assert.Equal(128, c.HeadDim);
    }

    [Fact]
    public void Grouped_query_config_parses()
    {
        var c = Parse("""
            {"model_type":"llama","hidden_size":2048,"intermediate_size":8192,"num_hidden_layers":16,"num_attention_heads":32,
             "num_key_value_heads":8,"rms_norm_eps":1e-5,"rope_theta":500000.0,"max_position_embeddings":8192,"vocab_size":128256,
             "tie_word_embeddings":true,"bos_token_id":128000,"eos_token_id":[128001,128008,128009],"rope_scaling":null}
            """);
        Assert.Equal(8, c.NumKeyValueHeads);
        Assert.Equal(4, c.QueriesPerKeyValue);
        Assert.Equal(500000.0, c.RopeTheta);
        Assert.True(c.TieWordEmbeddings);
        Assert.Equal(128001, c.EosTokenId);
    }

    [Theory]
    [InlineData("""{"hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":5,"vocab_size":10}""", "multiple")]
    [InlineData("""{"hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":3,"vocab_size":10}""", "num_key_value_heads")]
    [InlineData("""{"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10}""", "hidden_size")]
    [InlineData("""{"model_type":"mistral","hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10}""", "mistral")]
    [InlineData("""{"hidden_size":64,"intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10,"rope_scaling":{"type":"linear","factor":2}}""", "rope_scaling")]
    [InlineData("""{"hidden_size":"64","intermediate_size":8,"num_hidden_layers":1,"num_attention_heads":4,"vocab_size":10}""", "hidden_size")]
    [InlineData("""[1,2]""", "object")]
    public void Bad_configs_throw_a_configuration_exception_naming_the_problem(string json, string mention)
    {
        var ex = Assert.Throws<MiniGptConfigurationException>(() => Parse(json));
        Assert.Contains(mention, ex.Message, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void Missing_config_file_throws_a_configuration_exception()
        => Assert.Throws<MiniGptConfigurationException>(() => LlamaConfig.FromFile(Path.Combine(Path.GetTempPath(), "no-such-llama-folder")));

    [SkippableFact]
    public void Building_a_7B_shaped_model_touches_no_weight_memory()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/status");
        static long RssBytes() => long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal))
            .Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) * 1024;
        // Two 7B blocks plus a 32000-row embedding and head in float32: ~2.9 GB of parameters.
        var config = new LlamaConfig(4096, 11008, 2, 32, 32, 1e-6, 10000, 2048, 32000, TieWordEmbeddings: false);
        var before = RssBytes();
        using var lm = new LlamaForCausalLM(config, ScalarType.Float32, CPU);
        using var session = lm.CreateSession(2048); // 2 × 2 × 32 × 2048 × 128 × 4 B = 268 MB of cache, also untouched
        var bytes = lm.parameters().Sum(p => p.NumberOfElements * p.ElementSize);
        var grown = RssBytes() - before;
        Assert.True(grown < bytes / 20, $"resident memory grew by {grown >> 20} MB for {bytes >> 20} MB of parameters");
    }

    [Fact]
    public void State_dict_keys_are_the_hugging_face_keys()
    {
        var untied = new LlamaConfig(16, 24, 2, 4, 2, 1e-6, 10000, 32, 50, TieWordEmbeddings: false);
        using var scope = NewDisposeScope(); // the model must outlive a scope open at construction
        using var lm = new LlamaForCausalLM(untied, ScalarType.Float32, CPU);
        var sd = lm.state_dict();
        var expected = new List<string> { "model.embed_tokens.weight" };
        for (var i = 0; i < 2; i++)
            expected.AddRange(new[]
            {
                "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight",
            }.Select(k => $"model.layers.{i}.{k}"));
        expected.Add("model.norm.weight");
        expected.Add("lm_head.weight");
        Assert.Equal(expected.Order(), sd.Keys.Order());
        Assert.Equal([8L, 16L], sd["model.layers.1.self_attn.k_proj.weight"].shape);
        Assert.Equal([16L, 24L], sd["model.layers.0.mlp.down_proj.weight"].shape);
        Assert.All(sd.Values, t => Assert.False(t.requires_grad));

        scope.Dispose();
        using var tied = new LlamaForCausalLM(untied with { TieWordEmbeddings = true }, ScalarType.BFloat16, CPU);
        Assert.DoesNotContain("lm_head.weight", tied.state_dict().Keys);
        Assert.Equal(ScalarType.BFloat16, tied.state_dict()["model.norm.weight"].dtype);
        Assert.Equal(50L * 16, lm.state_dict()["model.embed_tokens.weight"].numel()); // still alive after the scope
    }
}

/// <summary>Loading through the validating loader: tied heads, missing and mismatched tensors.</summary>
public sealed class LlamaLoadTests
{
    [SkippableFact]
    public void Untied_model_without_lm_head_is_refused_naming_the_key()
    {
        var folder = Fixtures.Require(LlamaFixtures.TinyFolder);
        using var file = WeightFiles.Open(folder);
        using var source = file.Renamed(k => k == "lm_head.weight" ? null : k);
        var ex = Assert.Throws<MiniGptWeightsException>(() => LlamaForCausalLM.Load(LlamaConfig.FromFile(folder), source, ScalarType.Float32, CPU));
        Assert.Contains("lm_head.weight", ex.Message);
    }

    [SkippableFact]
    public void A_tied_config_ignores_a_stored_lm_head_and_uses_the_embeddings()
    {
        var folder = Fixtures.Require(LlamaFixtures.TinyFolder);
        using var source = WeightFiles.Open(folder);
        using var lm = LlamaForCausalLM.Load(LlamaConfig.FromFile(folder) with { TieWordEmbeddings = true }, source, ScalarType.Float32, CPU);
        using var scope = NewDisposeScope();
        using var session = lm.CreateSession(4);
        var logits = session.PrefillTokens([1, 5]);
        // The head is the embedding table: logits = norm(h) · Eᵀ.
        Assert.Equal([1L, 800L], logits.shape);
        Assert.DoesNotContain("lm_head.weight", lm.state_dict().Keys);
    }

    [SkippableFact]
    public void A_config_that_does_not_fit_the_file_is_refused_with_shapes()
    {
        var folder = Fixtures.Require(LlamaFixtures.TinyFolder);
        using var source = WeightFiles.Open(folder);
        var ex = Assert.Throws<MiniGptWeightsException>(() =>
            LlamaForCausalLM.Load(LlamaConfig.FromFile(folder) with { VocabSize = 32001 }, source, ScalarType.Float32, CPU));
        Assert.Contains("model.embed_tokens.weight", ex.Message);
        Assert.Contains("32001", ex.Message);
    }

    [SkippableFact]
    public void A_sharded_float16_checkpoint_loads_to_the_same_float32_model()
    {
        // Released LLaMA weights are sharded float16; the oracle's weights are fp16-exact, so a
        // float16 copy is lossless and must give bit-identical float32 logits.
        var folder = Fixtures.Require(LlamaFixtures.TinyFolder);
        using var tmp = new TempDir();
        File.Copy(Path.Combine(folder, "config.json"), tmp.File("config.json"));
        using (var file = WeightFiles.Open(Path.Combine(folder, "pytorch_model.bin")))
            SafetensorsWriter.WriteSharded(tmp.Path, file, maxShardBytes: 100_000, floatDType: ScalarType.Float16);
        Assert.True(File.Exists(tmp.File("model.safetensors.index.json")));

        using var scope = NewDisposeScope();
        using var reference = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        using var fromHalf = LlamaForCausalLM.Load(tmp.Path, ScalarType.Float32, CPU);
        using var a = reference.CreateSession(8);
        using var b = fromHalf.CreateSession(8);
        Assert.Equal(0.0, Oracle.MaxAbsDiff(a.PrefillTokens([1, 305, 759, 310]), b.PrefillTokens([1, 305, 759, 310])));
    }
}
