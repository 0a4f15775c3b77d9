using MiniGpt4.Tests.Support;
using System.Text.Json.Nodes;
using MiniGpt4.Language;
using MiniGpt4.Language.Kernels;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language.Kernels;

/// <summary>The LLaMA with <see cref="CpuGemvKernel"/> on every projection (and the tied head) against the oracles.</summary>
public sealed class GemvKernelModelTests
{
    private readonly ITestOutputHelper _out;

    public GemvKernelModelTests(ITestOutputHelper output)
    {
        _out = output;
        set_num_threads(1);
    }

    /// <summary>Counts the products the kernel computed itself (decode) and those it handed to libtorch (prefill).</summary>
    private sealed class Counting(CpuGemvKernel inner) : ILinearKernel
    {
        public int Handled, FellBack;

        public Tensor Forward(Tensor x, Tensor weight)
        {
            if (inner.Handles(x, weight)) Handled++;
            else FellBack++;
            return inner.Forward(x, weight);
        }
    }

    private static JsonNode Reference => Oracle.Reference;

    [SkippableFact]
    public void Stories260K_greedy_256_tokens_stay_exact_with_the_kernel()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        using var temporaries = NewDisposeScope();
        var reference = Fixtures.Json("assets/stories260K/reference.json")["cases"]![0]!;
        var prompt = Oracle.Ints(reference["prompt_ids"]!);
        var expected = Oracle.Ints(reference["generated_ids"]!);
        Assert.Equal(256, expected.Length);
        using var lm = LlamaFixtures.Load(LlamaFixtures.StoriesFolder);
        var kernel = new Counting(new CpuGemvKernel());
        lm.LinearKernel = kernel;

        using var session = lm.CreateSession(prompt.Length + expected.Length);
        var generated = new List<int>();
        var logits = session.PrefillTokens(prompt);
        while (generated.Count < expected.Length)
        {
            var token = LlamaFixtures.Argmax(logits[0]);
            logits.Dispose();
            generated.Add(token);
            logits = session.Step([token]);
        }
        logits.Dispose();
        Assert.Equal(expected, generated);
        // Every decode step (and the prefill of a prompt short enough): 7 projections per block plus the tied head.
        var passes = expected.Length + (prompt.Length <= CpuGemvKernel.DefaultMaxRows ? 1 : 0);
        Assert.Equal(passes * (7 * lm.Config.NumHiddenLayers + 1), kernel.Handled);
    }

    [SkippableFact]
    public void Text_only_logits_and_greedy_tokens_match_the_oracle_with_the_kernel()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        using var temporaries = NewDisposeScope();
        var r = Reference["variants"]!["vicuna0"]!["text_only_llm"]!;
        var ids = Oracle.Ints(r["input_ids"]!);
        var expectedIds = Oracle.Ints(r["generated_ids"]!);
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        var kernel = new Counting(new CpuGemvKernel());
        lm.LinearKernel = kernel;

        // One position at a time, so every product of the prompt goes through the kernel too.
        using var expected = Oracle.Tensor(r["logits"]!.GetValue<string>());
        using var session = lm.CreateSession(64);
        var perPosition = new List<Tensor>();
        foreach (var id in ids) perPosition.Add(session.PrefillTokens([id]));
        using var logits = cat(perPosition.ToArray(), 0);
        foreach (var t in perPosition) t.Dispose();
        var diff = Oracle.MaxAbsDiff(logits, expected);
        _out.WriteLine($"text-only logits, position by position through the kernel: max abs diff {diff}");
        Assert.True(diff <= 1e-4, $"max abs diff {diff}");
        Assert.Equal(0, kernel.FellBack);

        using var greedy = lm.CreateSession(64);
        var generated = new List<int>();
        var next = greedy.PrefillTokens(ids);
        for (var step = 0; step < expectedIds.Length; step++)
        {
            var token = LlamaFixtures.Argmax(next[0]);
            next.Dispose();
            generated.Add(token);
            next = greedy.Step([token]);
        }
        next.Dispose();
        Assert.Equal(expectedIds, generated);
    }

    [SkippableTheory]
    [InlineData("vicuna0", "a_gradient_shapes_640x480.png")]
    [InlineData("llama2", "b_tall_100x300.jpg")]
    public void Cached_chat_steps_match_the_oracle_with_the_kernel(string variant, string image)
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        using var temporaries = NewDisposeScope();
        var chat = Reference["variants"]![variant]!["chat"]![image]!;
        var kv = chat["kv_cache_check"]!;
        var generated = Oracle.Ints(chat["runs"]!["rp_1.0"]!["generated_ids"]!);
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        lm.LinearKernel = new CpuGemvKernel();
        using var embeds = Oracle.Tensor(chat["input_embeds"]!.GetValue<string>());
        using var cachedExpected = Oracle.Tensor(kv["logits_kvcache"]!.GetValue<string>());
        var steps = (int)cachedExpected.shape[0];

        using var session = lm.CreateSession((int)embeds.shape[0] + steps);
        var cached = new List<Tensor> { session.Prefill(embeds) };
        for (var i = 0; i < steps - 1; i++) cached.Add(session.Step([generated[i]]));
        using var all = cat(cached.ToArray(), 0);
        foreach (var c in cached) c.Dispose();
        var diff = Oracle.MaxAbsDiff(all, cachedExpected);
        _out.WriteLine($"{variant} {image}: cached logits max abs diff {diff}");
        Assert.True(diff <= 1e-4, $"cached logits max abs diff {diff}");
    }

    [SkippableFact]
    public void Beam_rows_decode_through_the_kernel_like_libtorch()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the kernel needs AVX-512F or AVX2 + FMA");
        using var temporaries = NewDisposeScope();
        using var lm = LlamaFixtures.Load(LlamaFixtures.StoriesFolder);
        lm.LinearKernel = TorchLinearKernel.Instance;
        using var reference = lm.CreateSession(16, rows: 3);
        reference.PrefillTokens([1, 400, 30]).Dispose();
        using var expected = reference.Step([5, 9, 77]);

        var kernel = new Counting(new CpuGemvKernel());
        lm.LinearKernel = kernel;
        using var session = lm.CreateSession(16, rows: 3);
        session.PrefillTokens([1, 400, 30]).Dispose();
        var handledBefore = kernel.Handled;
        using var actual = session.Step([5, 9, 77]);
        Assert.Equal(7 * lm.Config.NumHiddenLayers + 1, kernel.Handled - handledBefore);
        var diff = Oracle.MaxAbsDiff(actual, expected);
        Assert.True(diff <= LlamaFixtures.Fp32Tolerance(expected), $"3-row step vs libtorch: {diff}");
    }
}

/// <summary>Which kernel a new model starts with.</summary>
public sealed class DefaultKernelTests
{
    [Fact]
    public void Bfloat16_cpu_models_decode_with_the_gemv_kernel_and_float32_with_libtorch()
    {
        var config = new LlamaConfig(16, 32, 1, 2, 2, 1e-6, 10000, 64, 40, TieWordEmbeddings: false);
        using var bf16 = new LlamaForCausalLM(config, ScalarType.BFloat16, CPU);
        using var fp32 = new LlamaForCausalLM(config, ScalarType.Float32, CPU);
        Assert.Equal(CpuGemvKernel.IsSupported, bf16.LinearKernel is CpuGemvKernel);
        Assert.All(bf16.Projections, p => Assert.Same(bf16.LinearKernel, p.Kernel));
        Assert.Same(TorchLinearKernel.Instance, fp32.LinearKernel);
        Assert.All(fp32.Projections, p => Assert.Same(TorchLinearKernel.Instance, p.Kernel));
        Assert.Same(TorchLinearKernel.Instance, LlamaForCausalLM.DefaultKernel(ScalarType.BFloat16, new Device(TorchSharp.DeviceType.CUDA, 0)));
    }
}
