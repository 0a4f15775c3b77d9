using MiniGpt4.Weights;
using System.Text.Json.Nodes;
using MiniGpt4.Language;
using MiniGpt4.Tests.Fuzzing;
using MiniGpt4.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Weights;

/// <summary>
/// Hostile or mismatched configuration beside valid tiny weights: a <c>config.json</c> or manifest
/// that declares a million layers, a billion positions or widths the weights do not have must be
/// refused with a typed exception naming the file and the field, before anything sized by it is
/// allocated. Each case asserts the exception and that the managed allocations and the peak resident
/// set stay small (the old code grew past 3 GB within seconds on the first two).
/// </summary>
public sealed class HostileConfigTests
{
    private const long ManagedBudget = 32L << 20;
    private const long PeakRssBudget = 160L << 20;

    static HostileConfigTests()
    {
        // libtorch's first use maps its code and allocator arenas: do it outside any measurement.
        using var warm = ones(4);
    }

    /// <summary>A copy of the tiny oracle LLaMA folder (config.json, model.safetensors, tokenizer.model) with config.json edited.</summary>
    private static string LlamaCopy(TempDir dir, Action<JsonObject> edit, string name = "llama")
    {
        var source = Fixtures.Require("oracle/tiny/llama");
        var folder = Path.Combine(dir.Path, name);
        Directory.CreateDirectory(folder);
        foreach (var f in new[] { "model.safetensors", "tokenizer.model" })
            File.Copy(Path.Combine(source, f), Path.Combine(folder, f));
        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject();
        edit(config);
        File.WriteAllText(Path.Combine(folder, "config.json"), config.ToJsonString());
        return folder;
    }

    private static T RefusedCheaply<T>(Action load, params string[] mentions) where T : MiniGptException
    {
        var (thrown, use) = MemoryProbe.MeasureThrow(load);
        var ex = Assert.IsType<T>(thrown);
        foreach (var m in mentions) Assert.Contains(m, ex.Message, StringComparison.Ordinal);
        Assert.True(use.ManagedBytes < ManagedBudget && use.PeakRssGrowthBytes < PeakRssBudget, $"refusing cost {use}: {ex.Message}");
        return ex;
    }

    public static TheoryData<string, string, string> OutOfBounds => new()
    {
        { "num_hidden_layers", "1000000", "over the limit" },
        { "max_position_embeddings", "1000000000", "over the limit" },
        { "max_position_embeddings", "1e9", "must be an integer" },
        { "vocab_size", "2000000000", "over the limit" },
        { "hidden_size", "1073741824", "over the limit" },
        { "intermediate_size", "1000000000", "over the limit" },
        { "num_hidden_layers", "2.5", "must be an integer" },
        { "num_hidden_layers", "-2", "must be positive" },
        { "num_hidden_layers", "4294967298", "must be an integer" },
        { "num_hidden_layers", "\"2\"", "must be an integer" },
        { "num_attention_heads", "0", "must be positive" },
        { "rms_norm_eps", "1e999", "finite" },
        { "rope_theta", "-1", "must be positive" },
    };

    [SkippableTheory]
    [MemberData(nameof(OutOfBounds))]
    public void Out_of_bounds_or_non_integer_config_values_are_refused_naming_file_and_field(string field, string json, string reason)
    {
        using var dir = new TempDir();
        var folder = LlamaCopy(dir, c => c[field] = JsonNode.Parse(json));
        var ex = RefusedCheaply<MiniGptConfigurationException>(() => LlamaForCausalLM.Load(folder, ScalarType.Float32, CPU).Dispose(),
            Path.Combine(folder, "config.json"), field, reason);
        Assert.DoesNotContain("\n", ex.Message);
    }

    public static TheoryData<string, int, string> MismatchedWithTheWeights => new()
    {
        { "num_hidden_layers", 1000, "model.layers" },
        { "num_hidden_layers", 1, "model.layers" },
        { "intermediate_size", 200000, "mlp.gate_proj.weight" },
        { "hidden_size", 32768, "model.embed_tokens.weight" },
        { "vocab_size", 4000000, "model.embed_tokens.weight" },
        { "num_key_value_heads", 2, "self_attn.k_proj.weight" },
    };

    [SkippableTheory]
    [MemberData(nameof(MismatchedWithTheWeights))]
    public void Config_values_that_do_not_fit_the_weights_are_refused_before_allocation(string field, int value, string key)
    {
        using var dir = new TempDir();
        var folder = LlamaCopy(dir, c => c[field] = value);
        var ex = RefusedCheaply<MiniGptWeightsException>(() => LlamaForCausalLM.Load(folder, ScalarType.Float32, CPU).Dispose(),
            "config.json", field, value.ToString(System.Globalization.CultureInfo.InvariantCulture), key);
        Assert.Equal(Path.Combine(folder, "model.safetensors"), ex.File);
    }

    [SkippableFact]
    public void The_largest_accepted_max_position_embeddings_builds_no_rotary_table_until_a_session_needs_it()
    {
        using var dir = new TempDir();
        var folder = LlamaCopy(dir, c => c["max_position_embeddings"] = LlamaConfig.MaxPositions);
        LlamaForCausalLM? lm = null;
        var use = MemoryProbe.Measure(() => lm = LlamaForCausalLM.Load(folder, ScalarType.Float32, CPU));
        using (lm)
        {
            Assert.Equal(LlamaConfig.MaxPositions, lm!.Config.MaxPositionEmbeddings);
            Assert.Equal(0, lm.Rotary.Length);
            Assert.True(use.PeakRssGrowthBytes < PeakRssBudget, $"loading cost {use}");
            using var session = lm.CreateSession(16);
            Assert.Equal(16, lm.Rotary.Length);
        }
    }

    [SkippableFact]
    public void The_public_entry_point_refuses_a_hostile_language_model_folder_cheaply()
    {
        using var dir = new TempDir();
        var folder = LlamaCopy(dir, c => c["num_hidden_layers"] = 1000000);
        RefusedCheaply<MiniGptConfigurationException>(() => MiniGptPipeline.LoadAsync(folder).GetAwaiter().GetResult().Dispose(),
            "num_hidden_layers", "1000000");
        var mismatched = LlamaCopy(dir, c => c["num_hidden_layers"] = 512, "llama-512");
        RefusedCheaply<MiniGptWeightsException>(() => MiniGptPipeline.LoadAsync(mismatched).GetAwaiter().GetResult().Dispose(),
            "num_hidden_layers = 512");
    }

    /// <summary>The tiny vicuna0 manifest with absolute paths into the oracle folder and <paramref name="edit"/> applied.</summary>
    private static string Manifest(TempDir dir, Action<JsonObject> edit, string? llm = null)
    {
        var tiny = Fixtures.Require("oracle/tiny");
        var m = JsonNode.Parse(File.ReadAllText(Path.Combine(tiny, "minigpt4-vicuna0.json")))!.AsObject();
        m["vision"]!["checkpoint"] = Path.Combine(tiny, "eva_vit_g.pth");
        m["qformer"]!["checkpoint"] = Path.Combine(tiny, "blip2_pretrained_flant5xxl.pth");
        m["qformer"]!["config"] = Path.Combine(tiny, "bert-base-uncased", "config.json");
        m["projection"]!["checkpoint"] = Path.Combine(tiny, "pretrained_minigpt4.pth");
        m["llm"]!["path"] = llm ?? Path.Combine(tiny, "llama");
        edit(m);
        var path = dir.File($"minigpt4-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, m.ToJsonString());
        return path;
    }

    public static TheoryData<string, string, string, string> HostileManifests => new()
    {
        // section, field, value, expected mention
        { "vision", "depth", "1000000", "vision.depth = 1000000 is over the limit" },
        { "vision", "image_size", "1000062", "vision.image_size = 1000062 is over the limit" },
        { "vision", "mlp_hidden", "2.5", "'mlp_hidden' must be an integer" },
        { "qformer", "num_query_tokens", "100000000", "qformer.num_query_tokens = 100000000 is over the limit" },
    };

    [SkippableTheory]
    [MemberData(nameof(HostileManifests))]
    public void Out_of_bounds_manifest_values_are_refused(string section, string field, string value, string mention)
    {
        using var dir = new TempDir();
        var manifest = Manifest(dir, m => m[section]![field] = JsonNode.Parse(value));
        var ex = RefusedCheaply<MiniGptConfigurationException>(() => MiniGptPipeline.LoadAsync(manifest).GetAwaiter().GetResult().Dispose(), mention);
        Assert.Contains(manifest, ex.Message, StringComparison.Ordinal);
    }

    public static TheoryData<string, string, int, string> MismatchedManifests => new()
    {
        // section, field, value (within bounds, not what the checkpoint holds), expected key in the message
        { "vision", "mlp_hidden", 60000, "blocks.0.mlp.fc1.weight" },
        { "vision", "width", 8192, "patch_embed.proj.weight" },
        { "vision", "patch_size", 16, "patch_embed.proj.weight" },
        { "vision", "depth", 200, "vision.depth = 200" },
        { "qformer", "num_query_tokens", 4000, "query_tokens" },
    };

    [SkippableTheory]
    [MemberData(nameof(MismatchedManifests))]
    public void Manifest_sections_that_do_not_fit_their_checkpoints_are_refused_before_allocation(string section, string field, int value, string mention)
    {
        using var dir = new TempDir();
        var manifest = Manifest(dir, m =>
        {
            m[section]![field] = value;
            if (field == "patch_size") m["vision"]!["image_size"] = 16 * 14;
        });
        var ex = RefusedCheaply<MiniGptWeightsException>(() => MiniGptPipeline.LoadAsync(manifest).GetAwaiter().GetResult().Dispose(), mention);
        Assert.Contains(manifest, ex.Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void A_bert_config_that_does_not_fit_the_blip2_checkpoint_is_refused_naming_it()
    {
        using var dir = new TempDir();
        var bert = JsonNode.Parse(File.ReadAllText(Fixtures.Require("oracle/tiny/bert-base-uncased/config.json")))!.AsObject();
        bert["num_hidden_layers"] = 200;
        var bertPath = dir.File("bert.json");
        File.WriteAllText(bertPath, bert.ToJsonString());
        var manifest = Manifest(dir, m => m["qformer"]!["config"] = bertPath);
        RefusedCheaply<MiniGptWeightsException>(() => MiniGptPipeline.LoadAsync(manifest).GetAwaiter().GetResult().Dispose(),
            bertPath, "200 layers");

        bert["num_hidden_layers"] = 100000;
        File.WriteAllText(bertPath, bert.ToJsonString());
        RefusedCheaply<MiniGptConfigurationException>(() => MiniGptPipeline.LoadAsync(manifest).GetAwaiter().GetResult().Dispose(),
            bertPath, "layers");
    }

    [SkippableFact]
    public void A_manifest_whose_language_model_config_is_hostile_is_refused_before_the_vision_parts_load()
    {
        using var dir = new TempDir();
        var llm = LlamaCopy(dir, c => c["intermediate_size"] = 100000);
        var manifest = Manifest(dir, _ => { }, llm);
        RefusedCheaply<MiniGptWeightsException>(() => MiniGptPipeline.LoadAsync(manifest).GetAwaiter().GetResult().Dispose(),
            "intermediate_size = 100000", "mlp.gate_proj.weight");
    }

    [SkippableFact]
    public void The_tiny_manifests_still_pass_the_checkpoint_checks()
    {
        foreach (var name in new[] { "oracle/tiny/minigpt4-vicuna0.json", "oracle/tiny/minigpt4-llama2.json", "oracle/tiny/minigptv2/minigptv2.json", "oracle/tiny/llama" })
            new MiniGpt4.Models.ModelFiles(ModelManifest.Load(Fixtures.Require(name))).Dispose();
    }
}

/// <summary>
/// Regression tests for configuration parsing bugs the fuzzers (tests/MiniGpt4.Tests/Fuzzing) or their
/// review found: each input used to escape as an untyped .NET exception.
/// </summary>
public sealed class ConfigParsingRegressionTests
{
    private const string Tiny = """{"hidden_size":64,"intermediate_size":176,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":800""";

    [Theory]
    [InlineData(Tiny + ""","model_type":"ll\ud800ama"}""", "not a valid string")]          // InvalidOperationException from GetString
    [InlineData(Tiny + ""","eos_token_id":["a",2]}""", null)]                              // InvalidOperationException from TryGetInt32 (ids are informational: ignored)
    [InlineData(Tiny + ""","rms_norm_eps":1e999}""", "finite")]                             // FormatException from GetDouble
    [InlineData(Tiny + ""","rope_theta":-1e999}""", "finite")]
    [InlineData("""[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]""", "invalid JSON")] // JsonException from FromJson
    public void Llama_config_text_that_used_to_escape_untyped_is_a_configuration_error_or_accepted(string json, string? mention)
    {
        if (mention is null)
        {
            Assert.Null(LlamaConfig.FromJson(ConfigJson.Parse(json, "config.json")).EosTokenId);
            return;
        }
        var ex = Assert.Throws<MiniGptConfigurationException>(() => LlamaConfig.FromJson(ConfigJson.Parse(json, "config.json")));
        Assert.Contains(mention, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Llama_config_with_invalid_utf8_inside_a_string_is_a_configuration_error()
    {
        // Found by fuzzing: JsonDocument accepts it, GetString threw InvalidOperationException.
        var bytes = System.Text.Encoding.UTF8.GetBytes(Tiny + ""","model_type":"llama"}""");
        bytes[Array.IndexOf(bytes, (byte)'l', Tiny.Length + 10)] = 0xC3;
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllBytes(path, bytes);
        var ex = Assert.Throws<MiniGptConfigurationException>(() => LlamaConfig.FromFile(path));
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
        Assert.Contains("UTF-8", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"variant":"minigpt4-llama2","vision":{},"vision":{}}""", "invalid JSON")]          // ArgumentException: duplicate key (found by fuzzing)
    [InlineData("""{"llm":{"path":"llama\u0000x"}}""", "NUL")]                                       // ArgumentException from Path.GetFullPath (found by fuzzing)
    [InlineData("""{"llm":{"path":"\ud800"}}""", "'path' is not a valid string")]                    // InvalidOperationException (found by fuzzing)
    [InlineData("""{"\udc00":1}""", "invalid JSON text")]
    [InlineData("""{"lora":{"alpha":1e999}}""", "'alpha' must be a finite number")]
    [InlineData("""{"lora":{"alpha":-1}}""", "lora.alpha must be positive and finite")]
    public void Manifest_text_that_used_to_escape_untyped_is_a_configuration_error(string json, string mention)
    {
        var ex = Assert.Throws<MiniGptConfigurationException>(() => ModelManifest.Parse(json, "/m", "m.json"));
        Assert.Contains(mention, ex.Message, StringComparison.Ordinal);
        Assert.StartsWith("m.json", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"hidden_act":"ge\ud800lu"}""", "not a valid string")]
    [InlineData("""{"layer_norm_eps":1e999}""", "finite")]                                             // FormatException from GetDouble
    [InlineData("""{"num_hidden_layers":100000}""", "num_hidden_layers = 100000 is over the limit")]
    public void Bert_config_text_that_used_to_escape_untyped_is_a_configuration_error(string json, string mention)
    {
        using var dir = new TempDir();
        var path = dir.File("config.json");
        File.WriteAllText(path, json);
        var ex = Assert.Throws<MiniGptConfigurationException>(() => MiniGpt4.Bridge.QFormerConfig.FromBertConfigJson(path));
        Assert.Contains(mention, ex.Message, StringComparison.Ordinal);
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }
}
