using System.Text.Json.Nodes;
using MiniGpt4.Language;
using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language;

/// <summary>MiniGPT-v2: the tiny LLaMA with the stage checkpoint's LoRA merged, against the oracle (peft 0.2.0, unmerged).</summary>
public sealed class LoraMergeTests
{
    private const string Checkpoint = "oracle/tiny/minigptv2/minigptv2_checkpoint.pth";
    private const string Prefix = "llama_model.base_model.model.";
    private const double Alpha = 16; // tiny/minigptv2/model_config.json: lora.alpha
    private const double V2Tolerance = 5e-4; // oracle README, extension tolerances (v2 logits)
    private readonly ITestOutputHelper _out;

    public LoraMergeTests(ITestOutputHelper output)
    {
        _out = output;
        set_num_threads(1);
    }

    private static JsonNode V2 => Oracle.Extension["minigptv2"]!;

    private static LlamaForCausalLM LoadMerged(out IReadOnlyList<string> merged)
    {
        var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        using var file = WeightFiles.Open(Fixtures.Require(Checkpoint));
        using var llm = file.WithPrefix(Prefix);
        merged = lm.MergeLora(llm, Alpha);
        return lm;
    }

    [SkippableFact]
    public void Merged_weights_equal_peft_merge()
    {
        using var scope = NewDisposeScope();
        using var lm = LoadMerged(out var merged);
        Assert.Equal(
            ["model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.v_proj"],
            merged.Order());
        var checks = V2["lora_checks"]!;
        var sd = lm.state_dict();
        foreach (var proj in new[] { "q_proj", "v_proj" })
        {
            var expected = Oracle.Tensor(checks[$"merged_layer0_{proj}_weight"]!.GetValue<string>());
            var diff = Oracle.MaxAbsDiff(sd[$"model.layers.0.self_attn.{proj}.weight"], expected);
            _out.WriteLine($"merged layer 0 {proj}: max abs diff {diff}");
            Assert.True(diff <= 1e-6, $"merged {proj} max abs diff {diff}");
        }
    }

    [SkippableTheory]
    [InlineData("vqa", "a_gradient_shapes_640x480.png")]
    [InlineData("vqa", "b_tall_100x300.jpg")]
    [InlineData("grounding", "a_gradient_shapes_640x480.png")]
    public void Merged_model_gives_the_oracle_logits(string task, string image)
    {
        using var scope = NewDisposeScope();
        var chat = V2["chat"]![task]![image]!;
        var generated = Oracle.Ints(chat["runs"]!["rp_1.0"]!["generated_ids"]);
        using var lm = LoadMerged(out _);
        var embeds = Oracle.Tensor(chat["input_embeds"]!.GetValue<string>());
        var firstExpected = Oracle.Tensor(chat["first_step_logits"]!.GetValue<string>());
        var cachedExpected = Oracle.Tensor(chat["kv_cache_check"]!["logits_kvcache"]!.GetValue<string>());

        using var session = lm.CreateSession((int)embeds.shape[0] + generated.Length);
        var steps = new List<Tensor> { session.Prefill(embeds) };
        for (var i = 0; i < cachedExpected.shape[0] - 1; i++) steps.Add(session.Step([generated[i]]));
        var first = Oracle.MaxAbsDiff(steps[0][0], firstExpected);
        var all = Oracle.MaxAbsDiff(cat(steps.ToArray(), 0), cachedExpected);
        _out.WriteLine($"{task}/{image}: first-step max abs diff {first}, 20 cached steps {all}");
        Assert.True(first <= V2Tolerance, $"first-step logits max abs diff {first}");
        Assert.True(all <= V2Tolerance, $"KV-cache logits max abs diff {all}");
        Assert.Equal(generated.Take(steps.Count), steps.Select(l => LlamaFixtures.Argmax(l[0]))); // greedy ids exact
    }

    [SkippableFact]
    public void Without_the_adapters_the_base_model_gives_peft_disabled_logits()
    {
        using var scope = NewDisposeScope();
        var checks = V2["lora_checks"]!;
        var chat = V2["chat"]!["vqa"]![checks["image"]!.GetValue<string>()]!;
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        var embeds = Oracle.Tensor(chat["input_embeds"]!.GetValue<string>());
        var expected = Oracle.Tensor(checks["first_step_logits_lora_disabled"]!.GetValue<string>());
        using var session = lm.CreateSession((int)embeds.shape[0]);
        var diff = Oracle.MaxAbsDiff(session.Prefill(embeds)[0], expected);
        _out.WriteLine($"LoRA disabled: first-step max abs diff {diff}");
        Assert.True(diff <= V2Tolerance, $"max abs diff {diff}");
    }

    [SkippableFact]
    public void Broken_adapters_are_refused_before_anything_changes()
    {
        using var scope = NewDisposeScope();
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        using var before = lm.state_dict()["model.layers.0.self_attn.q_proj.weight"].clone();
        using var file = WeightFiles.Open(Fixtures.Require(Checkpoint));
        using var llm = file.WithPrefix(Prefix);
        using var noB = llm.Renamed(k => k.EndsWith("layers.1.self_attn.v_proj.lora_B.weight", StringComparison.Ordinal) ? null : k);
        var ex = Assert.Throws<MiniGptWeightsException>(() => lm.MergeLora(noB, Alpha));
        Assert.Contains("lora_B", ex.Message);
        using var elsewhere = llm.Renamed(k => k.Replace("self_attn.q_proj", "self_attn.k_rope", StringComparison.Ordinal));
        Assert.Throws<MiniGptWeightsException>(() => lm.MergeLora(elsewhere, Alpha));
        Assert.Equal(0.0, Oracle.MaxAbsDiff(before, lm.state_dict()["model.layers.0.self_attn.q_proj.weight"]));
    }
}
