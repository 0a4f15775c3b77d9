using System.Text;
using System.Text.Json.Nodes;
using CsCheck;
using MiniGpt4.Bridge;
using MiniGpt4.Language;
using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Fuzzing;

/// <summary>
/// Seeded JSON-value mutations (numbers out of range, non-integers, wrong types, removed and duplicated
/// keys, deep nesting, huge strings and arrays, plus byte damage) of the LLaMA <c>config.json</c>, the
/// BERT <c>config.json</c> and the model manifests; whatever parses is then checked against the tiny
/// weights' headers, and some of it loaded. Allowed outcome: success,
/// <see cref="MiniGptConfigurationException"/> (bad configuration) or <see cref="MiniGptWeightsException"/>
/// (configuration that does not fit its weights), the two the loading API documents.
/// </summary>
public sealed class ConfigFuzzTests(ITestOutputHelper output) : IDisposable
{
    private static readonly Type[] Allowed = [typeof(MiniGptConfigurationException), typeof(MiniGptWeightsException)];
    private readonly TempDir _dir = new();
    private long _files;

    public void Dispose() => _dir.Dispose();

    private const string Vicuna7B = """
        {"architectures":["LLaMAForCausalLM"],"bos_token_id":0,"eos_token_id":[1,2],"hidden_act":"silu","hidden_size":4096,
         "intermediate_size":11008,"initializer_range":0.02,"max_sequence_length":2048,"model_type":"llama",
         "num_attention_heads":32,"num_hidden_layers":32,"num_key_value_heads":32,"pad_token_id":-1,"rms_norm_eps":1e-06,
         "rope_theta":10000.0,"rope_scaling":null,"tie_word_embeddings":false,"torch_dtype":"float16","vocab_size":32001}
        """;

    private static Gen<(int Seed, (Mutations.JsonMutation[] Json, ByteMutation[] Bytes) M)> Cases(int seeds)
        => Gen.Select(Gen.Int[0, seeds - 1], Mutations.JsonCase, (seed, m) => (Seed: seed, M: m));

    private static string Show(string[] names, (int Seed, (Mutations.JsonMutation[] Json, ByteMutation[] Bytes) M) c)
        => $"{names[c.Seed]} json [{string.Join(", ", c.M.Json)}] bytes [{string.Join(", ", c.M.Bytes)}]";

    [SkippableFact]
    public void Llama_config_mutations_are_refused_only_with_typed_exceptions()
    {
        var folder = Fixtures.Require("oracle/tiny/llama");
        var seeds = new[] { File.ReadAllText(Path.Combine(folder, "config.json")), Vicuna7B };
        var names = new[] { "tiny config.json", "vicuna-7b config.json" };
        using var weights = WeightFiles.Open(folder);
        byte[] Input((int Seed, (Mutations.JsonMutation[] Json, ByteMutation[] Bytes) M) c) => Mutations.ApplyJson(seeds[c.Seed], c.M.Json, c.M.Bytes);
        long n = 0, fits = 0;
        FuzzRunner.Run("llama-config", Cases(seeds.Length), c =>
        {
            var bytes = Input(c);
            LlamaConfig config;
            if (n++ % 4 == 0)
            {
                var path = _dir.File($"config{_files++}.json");
                File.WriteAllBytes(path, bytes);
                config = LlamaConfig.FromFile(path);
            }
            else config = LlamaConfig.FromJson(ConfigJson.Parse(bytes, "fuzz config.json"));
            config.CheckAgainst(weights, "fuzz config.json");
            // It fits the weights: every 8th such config is loaded for real and runs a prefill (~90 ms).
            if (fits++ % 8 != 0) return;
            using var lm = LlamaForCausalLM.Load(config, weights, ScalarType.Float32, CPU);
            using var session = lm.CreateSession(4);
            using var logits = session.PrefillTokens([1, 2]);
        }, c => Show(names, c), ciIterations: 4000, Allowed, output, Input);
    }

    [SkippableFact]
    public void Bert_config_mutations_are_refused_only_with_typed_exceptions()
    {
        var tiny = Fixtures.Require("oracle/tiny");
        var seeds = new[] { File.ReadAllText(Path.Combine(tiny, "bert-base-uncased", "config.json")) };
        var names = new[] { "tiny bert config.json" };
        using var blip2 = WeightFiles.Open(Path.Combine(tiny, "blip2_pretrained_flant5xxl.pth"));
        var view = QFormerNames.ToLavis(blip2);
        byte[] Input((int Seed, (Mutations.JsonMutation[] Json, ByteMutation[] Bytes) M) c) => Mutations.ApplyJson(seeds[c.Seed], c.M.Json, c.M.Bytes);
        FuzzRunner.Run("bert-config", Cases(seeds.Length), c =>
        {
            var path = _dir.File($"bert{_files++}.json");
            File.WriteAllBytes(path, Input(c));
            var config = (_files % 3) switch
            {
                0 => QFormerConfig.FromBertConfigJson(path),
                1 => QFormerConfig.FromBertConfigJson(path, numQueryTokens: 32, encoderWidth: 32),
                _ => QFormerConfig.FromBertConfigJson(path, numQueryTokens: 32, crossAttentionFreq: 2, encoderWidth: 32),
            };
            config.CheckAgainst(view, "fuzz");
        }, c => Show(names, c), ciIterations: 3000, Allowed, output, Input);
    }

    [SkippableFact]
    public void Manifest_mutations_are_refused_only_with_typed_exceptions()
    {
        var tiny = Fixtures.Require("oracle/tiny");
        var files = new[] { "minigpt4-vicuna0.json", "minigpt4-llama2.json", "minigptv2/minigptv2.json" };
        var seeds = files.Select(f =>
        {
            var path = Path.Combine(tiny, f);
            var m = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
            // Absolute paths, so the manifest may be parsed against any base folder.
            foreach (var (section, key) in new[] { ("vision", "checkpoint"), ("qformer", "checkpoint"), ("qformer", "config"), ("projection", "checkpoint"), ("llm", "path") })
                if (m[section]?[key] is { } v) m[section]![key] = Path.GetFullPath(Path.Combine(Path.GetDirectoryName(path)!, v.GetValue<string>()));
            return m.ToJsonString();
        }).ToArray();
        byte[] Input((int Seed, (Mutations.JsonMutation[] Json, ByteMutation[] Bytes) M) c) => Mutations.ApplyJson(seeds[c.Seed], c.M.Json, c.M.Bytes);
        long accepted = 0;
        FuzzRunner.Run("manifest", Cases(seeds.Length), c =>
        {
            var bytes = Input(c);
            ModelManifest manifest;
            if (c.M.Json.Length % 2 == 0)
            {
                var path = _dir.File($"manifest{_files++}.json");
                File.WriteAllBytes(path, bytes);
                manifest = ModelManifest.Load(path);
            }
            else manifest = ModelManifest.Parse(Encoding.UTF8.GetString(bytes), _dir.Path, "fuzz.json");
            new MiniGpt4.Models.ModelFiles(manifest).Dispose();
            // Every 8th manifest that passes the checks is loaded through the public entry point.
            if (accepted++ % 8 == 0)
                MiniGptPipeline.LoadAsync(manifest).GetAwaiter().GetResult().Dispose();
        }, c => $"{files[c.Seed]}: " + Show(files, c), ciIterations: 2400, Allowed, output, Input);
    }
}
