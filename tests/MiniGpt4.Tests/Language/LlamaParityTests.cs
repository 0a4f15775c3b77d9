using MiniGpt4.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language;

/// <summary>Parity with transformers 4.30 <c>LlamaForCausalLM</c> through the oracle's tiny model and a real trained model.</summary>
public sealed class LlamaParityTests
{
    private readonly ITestOutputHelper _out;

    public LlamaParityTests(ITestOutputHelper output)
    {
        _out = output;
        set_num_threads(1);
    }

    [SkippableTheory]
    [InlineData("model.safetensors")]
    [InlineData("pytorch_model.bin")]
    public void Text_only_logits_and_greedy_tokens_match_the_oracle(string file)
    {
        using var temporaries = NewDisposeScope();
        var r = Oracle.Reference["variants"]!["vicuna0"]!["text_only_llm"]!;
        var ids = Oracle.Ints(r["input_ids"]);
        var expectedIds = Oracle.Ints(r["generated_ids"]);
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder, file);
        using var expected = Oracle.Tensor(r["logits"]!.GetValue<string>());

        using (var session = lm.CreateSession(64))
        using (var idsT = tensor(ids.Select(i => (long)i).ToArray(), [1L, ids.Length]))
        using (var embeds = lm.EmbedTokens(idsT))
        using (var logits = session.ForwardAllLogits(embeds))
        {
            var diff = Oracle.MaxAbsDiff(logits[0], expected);
            _out.WriteLine($"text-only logits max abs diff {diff}");
            Assert.True(diff <= 1e-4, $"text-only logits max abs diff {diff}");
        }

        using var greedy = lm.CreateSession(64);
        Assert.Equal(expectedIds, LlamaFixtures.Greedy(greedy, ids, expectedIds.Length));
    }

    [SkippableTheory]
    [InlineData("vicuna0", "a_gradient_shapes_640x480.png")]
    [InlineData("vicuna0", "b_tall_100x300.jpg")]
    [InlineData("llama2", "a_gradient_shapes_640x480.png")]
    [InlineData("llama2", "b_tall_100x300.jpg")]
    public void Chat_embeddings_give_the_oracle_first_step_and_per_step_logits(string variant, string image)
    {
        using var temporaries = NewDisposeScope();
        var chat = Oracle.Reference["variants"]![variant]!["chat"]![image]!;
        var kv = chat["kv_cache_check"]!;
        var generated = Oracle.Ints(chat["runs"]!["rp_1.0"]!["generated_ids"]);
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        using var embeds = Oracle.Tensor(chat["input_embeds"]!.GetValue<string>());
        using var firstExpected = Oracle.Tensor(chat["first_step_logits"]!.GetValue<string>());
        using var cachedExpected = Oracle.Tensor(kv["logits_kvcache"]!.GetValue<string>());
        using var fullExpected = Oracle.Tensor(kv["logits_nocache"]!.GetValue<string>());
        var steps = (int)cachedExpected.shape[0];
        var len = (int)embeds.shape[0];

        // With the cache: prefill the prompt, then one generated token per step.
        using var session = lm.CreateSession(len + steps);
        var cached = new List<Tensor> { session.Prefill(embeds) };
        var first = Oracle.MaxAbsDiff(cached[0][0], firstExpected);
        _out.WriteLine($"first-step logits max abs diff {first}");
        Assert.True(first <= 1e-4, $"first-step logits max abs diff {first}");
        for (var i = 0; i < steps - 1; i++) cached.Add(session.Step([generated[i]]));
        using var cachedAll = cat(cached.Select(c => c).ToArray(), 0);
        foreach (var c in cached) c.Dispose();
        var kvDiff = Oracle.MaxAbsDiff(cachedAll, cachedExpected);
        _out.WriteLine($"KV-cache logits max abs diff {kvDiff}");
        Assert.True(kvDiff <= 1e-4, $"KV-cache logits max abs diff {kvDiff}");

        // Without a cache: one pass over prompt + generated tokens.
        using var genIds = tensor(generated.Take(steps - 1).Select(i => (long)i).ToArray(), [steps - 1L]);
        using var genEmbeds = lm.EmbedTokens(genIds);
        using var all = cat([embeds, genEmbeds], 0);
        using var fresh = lm.CreateSession(len + steps);
        using var full = fresh.ForwardAllLogits(all);
        using var tail = full[0].narrow(0, len - 1, steps);
        var fullDiff = Oracle.MaxAbsDiff(tail, fullExpected);
        _out.WriteLine($"no-cache logits max abs diff {fullDiff}");
        Assert.True(fullDiff <= 1e-4, $"no-cache logits max abs diff {fullDiff}");
        var selfDiff = Oracle.MaxAbsDiff(tail, cachedAll);
        _out.WriteLine($"KV cache vs one pass max abs diff {selfDiff}");
        Assert.True(selfDiff <= 1e-5, $"KV cache vs one pass max abs diff {selfDiff}");
    }

    [SkippableFact]
    public void Decoder_hidden_states_match_the_oracle()
    {
        using var temporaries = NewDisposeScope();
        var chat = Oracle.Reference["variants"]!["vicuna0"]!["chat"]!["a_gradient_shapes_640x480.png"]!;
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        using var embeds = Oracle.Tensor(chat["input_embeds"]!.GetValue<string>());
        using var expected = Oracle.Tensor(chat["debug_llama_hidden_states"]!.GetValue<string>());
        using var session = lm.CreateSession((int)embeds.shape[0]);
        var states = session.HiddenStates(embeds);
        try
        {
            Assert.Equal(expected.shape[0], states.Length);
            for (var i = 0; i < states.Length; i++)
            {
                var d = Oracle.MaxAbsDiff(states[i][0], expected[i]);
                _out.WriteLine($"hidden state {i} max abs diff {d}");
                Assert.True(d <= 1e-4, $"hidden state {i} max abs diff {d}");
            }
        }
        finally { foreach (var s in states) s.Dispose(); }
    }

    [SkippableFact]
    public void Stories260K_greedy_from_bos_reproduces_llama2c()
    {
        using var temporaries = NewDisposeScope();
        var reference = Fixtures.Json("assets/stories260K/reference.json")["cases"]![0]!;
        var prompt = Oracle.Ints(reference["prompt_ids"]);
        var expected = Oracle.Ints(reference["generated_ids"]);
        using var lm = LlamaFixtures.Load(LlamaFixtures.StoriesFolder);
        Assert.True(lm.Config.NumKeyValueHeads < lm.Config.NumAttentionHeads);
        Assert.True(lm.Config.TieWordEmbeddings);

        using var session = lm.CreateSession(prompt.Length + expected.Length);
        Assert.Equal(expected, LlamaFixtures.Greedy(session, prompt, expected.Length));
    }
}
