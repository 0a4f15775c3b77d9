using MiniGpt4.Language;
using MiniGpt4.Language.Kernels;
using MiniGpt4.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language.Kernels;

/// <summary>
/// The CPU decode step (<see cref="CpuDecoder"/>) against the libtorch path it replaces, the references, and itself:
/// a row's logits must not depend on the other rows of the step or on the thread count (bit for bit).
/// </summary>
public sealed class CpuDecoderTests
{
    private readonly ITestOutputHelper _out;

    public CpuDecoderTests(ITestOutputHelper output) => _out = output;

    /// <summary>
    /// A random model large enough that every product region has several 2 MiB chunks (so 2 threads really split
    /// them): grouped-query attention, an untied head, norm scales around 1.
    /// </summary>
    private static LlamaForCausalLM RandomModel(ScalarType dtype, long seed = 5) =>
        RandomModel(new LlamaConfig(HiddenSize: 256, IntermediateSize: 2048, NumHiddenLayers: 2, NumAttentionHeads: 8, NumKeyValueHeads: 2,
            RmsNormEps: 1e-5, RopeTheta: 10000, MaxPositionEmbeddings: 512, VocabSize: 8192, TieWordEmbeddings: false), dtype, seed);

    /// <summary>A model of <paramref name="config"/> with seeded random weights (norm scales around 1); the batched-step tests use it too.</summary>
    internal static LlamaForCausalLM RandomModel(LlamaConfig config, ScalarType dtype, long seed)
    {
        var lm = new LlamaForCausalLM(config, dtype, CPU);
        using var g = new TorchSharp.torch.Generator((ulong)seed);
        using var noGrad = no_grad();
        foreach (var (name, p) in lm.named_parameters())
        {
            using var values = name.EndsWith("norm.weight", StringComparison.Ordinal)
                ? randn(p.shape, generator: g).mul_(0.1).add_(1.0)
                : randn(p.shape, generator: g).mul_(0.05);
            p.copy_(values);
        }
        return lm;
    }

    private static float[] StepLogits(LlamaSession session, int[] tokens)
    {
        var logits = new float[tokens.Length * session.VocabSize];
        session.Step(tokens, logits);
        return logits;
    }

    private static void Prefill(LlamaSession session, int[] ids)
    {
        using var logits = session.PrefillTokens(ids);
    }

    [SkippableTheory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void A_row_gets_the_same_logits_alone_beside_other_rows_and_at_any_thread_count(ScalarType dtype)
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the decoder needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var lm = RandomModel(dtype);
        Assert.NotNull(lm.Decoder);
        int[] prompt = [1, 17, 400, 9, 3000, 77, 5];
        int[] next = [11, 2222, 8000, 4, 512, 73, 6001, 19];
        var threadsBefore = get_num_threads();
        try
        {
            // Reference: each token alone, one thread.
            set_num_threads(1);
            var solo = new float[next.Length][];
            for (var i = 0; i < next.Length; i++)
            {
                using var s = lm.CreateSession(64);
                Prefill(s, prompt);
                solo[i] = StepLogits(s, [next[i]]);
            }
            foreach (var threads in new[] { 1, 2 })
            {
                for (var rows = 1; rows <= next.Length; rows++)
                {
                    // The prompt is prefilled by libtorch, whose float32 GEMM may sum differently at another thread
                    // count: the caches are filled at one thread, only the step runs at the thread count tested.
                    set_num_threads(1);
                    using var s = lm.CreateSession(64);
                    Prefill(s, prompt);
                    s.ReorderRows(new int[rows]); // every row a copy of the prompt's cache
                    set_num_threads(threads);
                    var batch = StepLogits(s, next[..rows]);
                    for (var i = 0; i < rows; i++)
                        Assert.True(batch.AsSpan(i * lm.Config.VocabSize, lm.Config.VocabSize).SequenceEqual(solo[i]),
                            $"{dtype}: row {i} of {rows} at {threads} threads differs from the row alone");
                }
            }
        }
        finally { set_num_threads(threadsBefore); }
    }

    [SkippableTheory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void Rows_of_different_conversations_and_lengths_in_one_step_get_their_solo_logits(ScalarType dtype)
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the decoder needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var lm = RandomModel(dtype, seed: 9);
        var decoder = lm.Decoder!;
        using var a = lm.CreateSession(128);
        using var b = lm.CreateSession(128);
        Prefill(a, [1, 2, 3]);
        Prefill(b, [1, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140]);
        a.Reserve(a.Length + 1);
        b.Reserve(b.Length + 1);
        var vocab = lm.Config.VocabSize;
        var soloA = new float[vocab];
        var soloB = new float[vocab];
        decoder.Step([new DecodeRow(a, 0, 42)], soloA, 2);
        decoder.Step([new DecodeRow(b, 0, 4242)], soloB, 1);
        var both = new float[2 * vocab];
        decoder.Step([new DecodeRow(b, 0, 4242), new DecodeRow(a, 0, 42)], both, 2);
        Assert.True(both.AsSpan(0, vocab).SequenceEqual(soloB));
        Assert.True(both.AsSpan(vocab, vocab).SequenceEqual(soloA));
    }

    [SkippableTheory]
    [InlineData(ScalarType.Float32, 1e-5)]
    [InlineData(ScalarType.BFloat16, 0.03)]
    public void Decode_steps_match_the_libtorch_path(ScalarType dtype, double relative)
    {
        // fp32: the same arithmetic in another order (float32 noise). bf16: both round every activation to bf16 but
        // accumulate in different orders and attention differs (libtorch rounds scores and probabilities), so the
        // logits agree to a few bf16 steps (2^-8 relative each) of the largest logit.
        Skip.IfNot(CpuGemvKernel.IsSupported, "the decoder needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var lm = RandomModel(dtype, seed: 21);
        int[] prompt = [1, 300, 301, 302];
        int[] tokens = [5, 6000, 17, 250, 4096, 33];
        var fused = Decode(lm, prompt, tokens);
        lm.FusedDecode = false;
        var torchPath = Decode(lm, prompt, tokens);
        for (var t = 0; t < tokens.Length; t++)
        {
            var max = torchPath[t].Max(Math.Abs);
            var diff = fused[t].Zip(torchPath[t], (x, y) => Math.Abs(x - y)).Max();
            _out.WriteLine($"{dtype} step {t}: max |logit| {max:F3}, max |diff| {diff:G3} ({diff / max:G3} relative)");
            Assert.True(diff <= relative * max, $"step {t}: max |diff| {diff} > {relative} × {max}");
        }
    }

    [SkippableTheory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void A_prefill_through_the_decoder_equals_stepping_its_tokens_one_by_one(ScalarType dtype)
    {
        // Each prefill row is a decode step at its position: the same cache and the same last logits, bit for bit,
        // over several chunks (37 positions = 16 + 16 + 5) and at either thread count.
        Skip.IfNot(CpuGemvKernel.IsSupported, "the decoder needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var lm = RandomModel(dtype, seed: 8);
        lm.DecoderPrefill = true;
        var prompt = Enumerable.Range(0, 37).Select(i => 1 + i * 211 % 8000).ToArray();
        var threadsBefore = get_num_threads();
        try
        {
            foreach (var threads in new[] { 1, 2 })
            {
                set_num_threads(threads);
                using var stepped = lm.CreateSession(64);
                float[] last = [];
                foreach (var id in prompt) last = StepLogits(stepped, [id]);
                using var prefilled = lm.CreateSession(64);
                using var logits = prefilled.PrefillTokens(prompt);
                Assert.Equal(prompt.Length, prefilled.Length);
                Assert.True(logits.data<float>().ToArray().AsSpan().SequenceEqual(last), $"{dtype}, {threads} threads: last logits differ");
                Assert.True(StepLogits(prefilled, [42]).AsSpan().SequenceEqual(StepLogits(stepped, [42])), $"{dtype}, {threads} threads: the caches differ");
            }
        }
        finally { set_num_threads(threadsBefore); }
    }

    [SkippableTheory]
    [InlineData(ScalarType.Float32, 1e-5)]
    [InlineData(ScalarType.BFloat16, 0.03)]
    public void A_prefill_through_the_decoder_matches_libtorch_prefill(ScalarType dtype, double relative)
    {
        // As for decode steps: float32 noise in fp32; a few bf16 steps of the largest logit in bf16.
        Skip.IfNot(CpuGemvKernel.IsSupported, "the decoder needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var lm = RandomModel(dtype, seed: 9);
        var prompt = Enumerable.Range(0, 21).Select(i => 1 + i * 379 % 8000).ToArray();
        float[] Run(bool throughDecoder)
        {
            lm.DecoderPrefill = throughDecoder;
            using var s = lm.CreateSession(64);
            using var first = s.PrefillTokens(prompt);
            return [.. first.data<float>().ToArray(), .. StepLogits(s, [77])];
        }
        var decoder = Run(true);
        var torchPath = Run(false);
        var max = torchPath.Max(Math.Abs);
        var diff = decoder.Zip(torchPath, (x, y) => Math.Abs(x - y)).Max();
        _out.WriteLine($"{dtype}: max |logit| {max:F3}, max |diff| {diff:G3} ({diff / max:G3} relative)");
        Assert.True(diff <= relative * max, $"max |diff| {diff} > {relative} × {max}");
    }

    private static float[][] Decode(LlamaForCausalLM lm, int[] prompt, int[] tokens)
    {
        using var s = lm.CreateSession(64);
        Prefill(s, prompt);
        return tokens.Select(t => StepLogits(s, [t])).ToArray();
    }

    [SkippableFact]
    public void Stories260K_greedy_256_tokens_stay_exact_through_the_decoder()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the decoder needs AVX-512F or AVX2 + FMA");
        using var temporaries = NewDisposeScope();
        var reference = Fixtures.Json("assets/stories260K/reference.json")["cases"]![0]!;
        var prompt = Oracle.Ints(reference["prompt_ids"]!);
        var expected = Oracle.Ints(reference["generated_ids"]!);
        using var lm = LlamaFixtures.Load(LlamaFixtures.StoriesFolder);
        Assert.NotNull(lm.Decoder);
        using var session = lm.CreateSession(prompt.Length + expected.Length);
        var logits = new float[lm.Config.VocabSize];
        using (var first = session.PrefillTokens(prompt)) MiniGpt4.Runtime.TensorMath.CopyTo(first, logits);
        var generated = new List<int>();
        while (generated.Count < expected.Length)
        {
            var token = Array.IndexOf(logits, logits.Max());
            generated.Add(token);
            if (generated.Count < expected.Length) session.Step([token], logits);
        }
        Assert.Equal(expected, generated);
    }

    [SkippableFact]
    public void The_decoder_leaves_no_tensor_behind_and_frees_with_the_model()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the decoder needs AVX-512F or AVX2 + FMA");
        using var lm = RandomModel(ScalarType.BFloat16);
        using var s = lm.CreateSession(64);
        Prefill(s, [1, 2]);
        StepLogits(s, [3]);
        var before = TorchSharp.torch.Tensor.TotalCount;
        for (var i = 0; i < 20; i++) StepLogits(s, [4 + i]); // grows past nothing new: the cache holds 64 positions
        Assert.Equal(before, TorchSharp.torch.Tensor.TotalCount);
    }
}
