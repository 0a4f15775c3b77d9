using MiniGpt4.Language;
using MiniGpt4.Language.Kernels;
using MiniGpt4.Tests.Support;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language;

/// <summary>
/// <see cref="LlamaForCausalLM.Forward"/>, the full-sequence forward without a KV cache that training
/// differentiates: the session's and the oracle's logits, padding, gradients, frozen parameters, leaks.
/// </summary>
public sealed class LlamaForwardTests
{
    private readonly ITestOutputHelper _out;

    public LlamaForwardTests(ITestOutputHelper output)
    {
        _out = output;
        set_num_threads(1);
    }

    // The tiny oracle model (multi-head, untied head) and stories260K (grouped-query, tied head, trained).
    public static TheoryData<string> Models => new() { LlamaFixtures.TinyFolder, LlamaFixtures.StoriesFolder };

    // Realistic inputs: the embeddings of random token ids (a normal tensor, so it may require grad).
    private static Tensor RandomEmbeds(LlamaForCausalLM lm, long rows, long t, int seed)
    {
        using var g = new Generator((ulong)seed);
        using var ids = randint(3, lm.Config.VocabSize, [rows, t], generator: g, dtype: ScalarType.Int64);
        using var embeds = lm.EmbedTokens(ids); // an inference tensor
        return embeds.clone();
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void Logits_equal_the_cached_prefill_at_every_position(string folder)
    {
        foreach (var dtype in new[] { ScalarType.Float32, ScalarType.Float64 })
        {
            using var scope = NewDisposeScope();
            using var lm = LlamaFixtures.Load(folder, dtype: dtype);
            var embeds = RandomEmbeds(lm, 2, 23, seed: 1);
            using var session = lm.CreateSession(23, rows: 2);
            var cached = session.ForwardAllLogits(embeds);
            var full = lm.Forward(embeds);
            Assert.Equal(dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32, full.dtype);
            // The session rounds a float64 model's logits to float32 (its ITokenStepper contract): compare
            // at that precision, allowing one float32 step where the float64 values straddle a rounding boundary.
            var diff = Oracle.MaxAbsDiff(full.to(ScalarType.Float32), cached);
            var tolerance = dtype == ScalarType.Float64 ? Math.Pow(2, -23) * cached.abs().max().item<float>() : 1e-6;
            _out.WriteLine($"{folder} {dtype}: Forward vs cached prefill, max abs diff {diff} (tolerance {tolerance})");
            Assert.True(diff <= tolerance, $"{dtype}: max abs diff {diff}");
        }
    }

    [SkippableFact]
    public void Logits_match_the_oracle_text_only_and_no_cache_references()
    {
        using var scope = NewDisposeScope();
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        var text = Oracle.Reference["variants"]!["vicuna0"]!["text_only_llm"]!;
        var ids = Oracle.Ints(text["input_ids"]).Select(i => (long)i).ToArray();
        var textLogits = lm.Forward(lm.EmbedTokens(tensor(ids, [1L, ids.Length])));
        var textDiff = Oracle.MaxAbsDiff(textLogits[0], Oracle.Tensor(text["logits"]!.GetValue<string>()));
        _out.WriteLine($"text-only logits vs oracle: max abs diff {textDiff}");
        Assert.True(textDiff <= 1e-4, $"text-only logits max abs diff {textDiff}");

        // The oracle's one pass without a cache over prompt + generated tokens (its rows from the last prompt position on).
        foreach (var variant in new[] { "vicuna0", "llama2" })
            foreach (var image in new[] { "a_gradient_shapes_640x480.png", "b_tall_100x300.jpg" })
            {
                var chat = Oracle.Reference["variants"]![variant]!["chat"]![image]!;
                var generated = Oracle.Ints(chat["runs"]!["rp_1.0"]!["generated_ids"]).Select(i => (long)i).ToArray();
                var prompt = Oracle.Tensor(chat["input_embeds"]!.GetValue<string>());
                var expected = Oracle.Tensor(chat["kv_cache_check"]!["logits_nocache"]!.GetValue<string>());
                var steps = expected.shape[0];
                var tokens = lm.EmbedTokens(tensor(generated.Take((int)steps - 1).ToArray(), [steps - 1]));
                var logits = lm.Forward(cat([prompt, tokens], 0).unsqueeze(0));
                var diff = Oracle.MaxAbsDiff(logits[0].narrow(0, prompt.shape[0] - 1, steps), expected);
                _out.WriteLine($"{variant} {image}: no-cache logits vs oracle, max abs diff {diff}");
                Assert.True(diff <= 1e-4, $"{variant} {image}: max abs diff {diff}");
            }
    }

    [SkippableTheory]
    [InlineData(LlamaFixtures.TinyFolder, "left", ScalarType.Int64)]
    [InlineData(LlamaFixtures.TinyFolder, "right", ScalarType.Bool)]
    [InlineData(LlamaFixtures.StoriesFolder, "left", ScalarType.Float32)]
    [InlineData(LlamaFixtures.StoriesFolder, "right", ScalarType.Int64)]
    public void Padded_rows_give_the_unpadded_logits_at_real_positions(string folder, string side, ScalarType maskType)
    {
        using var scope = NewDisposeScope();
        using var lm = LlamaFixtures.Load(folder);
        int[] lengths = [23, 16, 5];
        const int t = 23;
        // Padding rows are loud noise: any leak through the mask would show.
        using var g = new Generator(7);
        var batch = randn([lengths.Length, t, lm.Config.HiddenSize], generator: g) * 50;
        var mask = zeros([lengths.Length, t], ScalarType.Int64);
        var alone = new Tensor[lengths.Length];
        for (var row = 0; row < lengths.Length; row++)
        {
            var n = lengths[row];
            var offset = side == "left" ? t - n : 0;
            var embeds = RandomEmbeds(lm, 1, n, seed: 10 + row);
            batch[row].narrow(0, offset, n).copy_(embeds[0]);
            mask[row].narrow(0, offset, n).fill_(1);
            alone[row] = lm.Forward(embeds)[0];
        }

        var padded = lm.Forward(batch, mask.to(maskType));
        Assert.True(padded.isfinite().all().item<bool>(), "padded positions must stay finite");
        for (var row = 0; row < lengths.Length; row++)
        {
            var n = lengths[row];
            var real = padded[row].narrow(0, side == "left" ? t - n : 0, n);
            var diff = Oracle.MaxAbsDiff(real, alone[row]);
            var tolerance = LlamaFixtures.Fp32Tolerance(alone[row]);
            _out.WriteLine($"{folder} {side} padding ({maskType}), row of {n}: max abs diff {diff} (tolerance {tolerance})");
            Assert.True(diff <= tolerance, $"row {row} ({n} real tokens): max abs diff {diff}");
        }
    }

    // -Σ log p(target) over the real positions: the training loss's shape.
    private static Tensor Loss(LlamaForCausalLM lm, Tensor embeds, Tensor mask, Tensor targets)
    {
        var logits = lm.Forward(embeds, mask);
        var picked = logits.log_softmax(-1).gather(2, targets.unsqueeze(2)).squeeze(2);
        return (picked * mask.to(picked.dtype)).sum().neg();
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void Input_gradients_match_central_differences_in_float64_and_frozen_parameters_get_none(string folder)
    {
        using var scope = NewDisposeScope();
        using var lm = LlamaFixtures.Load(folder, dtype: ScalarType.Float64);
        Assert.All(lm.parameters(), p => Assert.False(p.requires_grad));
        const long t = 7;
        var embeds = RandomEmbeds(lm, 2, t, seed: 3);
        // Row 0 is whole, row 1 has two padded positions on the left.
        var mask = tensor(new long[] { 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1 }, [2L, t]);
        using var g = new Generator(5);
        var targets = randint(0, lm.Config.VocabSize, [2, t], generator: g, dtype: ScalarType.Int64);

        var input = embeds.detach().requires_grad_(true);
        Loss(lm, input, mask, targets).backward();
        var grad = input.grad!;
        Assert.True(grad.abs().max().item<double>() > 0);
        Assert.All(lm.parameters(), p => Assert.Null(p.grad));
        // Padding influences no real position: its embeddings get exactly no gradient.
        Assert.Equal(0.0, grad[1].narrow(0, 0, 2).abs().max().item<double>());

        const double eps = 1e-5;
        using var noGrad = no_grad();
        foreach (var (b, p, h) in new (long, long, long)[] { (0, 0, 0), (0, 3, 17), (0, 6, 63), (1, 2, 5), (1, 4, 40), (1, 6, 31) })
        {
            var step = zeros_like(embeds);
            step[b, p, h] = tensor(eps, ScalarType.Float64);
            var plus = Loss(lm, embeds + step, mask, targets).item<double>();
            var minus = Loss(lm, embeds - step, mask, targets).item<double>();
            var numeric = (plus - minus) / (2 * eps);
            var analytic = grad[b, p, h].item<double>();
            var error = Math.Abs(numeric - analytic);
            _out.WriteLine($"{folder} d loss / d x[{b},{p},{h}]: autograd {analytic:E10}, central difference {numeric:E10}, |diff| {error:E2}");
            Assert.True(error <= 1e-7 * Math.Max(1, Math.Abs(analytic)), $"x[{b},{p},{h}]: autograd {analytic} vs central difference {numeric}");
        }
    }

    private sealed class CountingKernel(ILinearKernel inner) : ILinearKernel
    {
        public int Calls;

        public Tensor Forward(Tensor x, Tensor weight)
        {
            Calls++;
            return inner.Forward(x, weight);
        }
    }

    [SkippableFact]
    public void Autograd_products_bypass_the_custom_kernel_in_bfloat16()
    {
        using var scope = NewDisposeScope();
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder, dtype: ScalarType.BFloat16);
        var kernel = new CountingKernel(CpuGemvKernel.IsSupported ? new CpuGemvKernel() : TorchLinearKernel.Instance);
        lm.LinearKernel = kernel;
        // Four rows: few enough for the decode kernel, which would cut the graph.
        var embeds = RandomEmbeds(lm, 1, 4, seed: 4);
        var input = embeds.detach().requires_grad_(true);
        var logits = lm.Forward(input);
        Assert.Equal(ScalarType.Float32, logits.dtype);
        (logits * logits).mean().backward();
        Assert.Equal(0, kernel.Calls);
        Assert.True(input.grad!.isfinite().all().item<bool>());
        Assert.True(input.grad!.abs().max().to(ScalarType.Float32).item<float>() > 0);

        // Without autograd the kernel computes every product again (7 per block and lm_head).
        using (inference_mode()) lm.Forward(embeds);
        Assert.Equal(7 * lm.Config.NumHiddenLayers + 1, kernel.Calls);
    }

    [SkippableFact]
    public void Rotary_tables_grown_under_inference_mode_still_serve_autograd()
    {
        using var scope = NewDisposeScope();
        using var lm = LlamaFixtures.Load(LlamaFixtures.StoriesFolder); // max_position_embeddings 512
        using (inference_mode()) lm.CreateSession(600).Dispose();        // rebuilds the tables in inference mode
        var input = RandomEmbeds(lm, 1, 5, seed: 8).requires_grad_(true);
        lm.Forward(input).sum().backward(); // autograd refuses inference tensors saved for backward
        Assert.NotNull(input.grad);
    }

    [SkippableFact]
    public void Forward_and_backward_leave_no_live_tensors()
    {
        using var lm = LlamaFixtures.Load(LlamaFixtures.StoriesFolder);
        void Run()
        {
            using var scope = NewDisposeScope();
            var input = RandomEmbeds(lm, 2, 9, seed: 9).requires_grad_(true);
            var mask = ones([2, 9], ScalarType.Int64);
            mask[1].narrow(0, 0, 3).fill_(0);
            var targets = zeros([2, 9], ScalarType.Int64);
            Loss(lm, input, mask, targets).backward();
            Assert.NotNull(input.grad);
        }
        Run(); // anything created once per process (rotary tables, libtorch caches) before measuring
        var before = LiveTensors.Settled();
        for (var i = 0; i < 3; i++) Run();
        Assert.Equal(before, Tensor.TotalCount);         // nothing left for a finalizer to free
        Assert.Equal(before, LiveTensors.Settled());     // nothing kept reachable
    }

    [SkippableFact]
    public void Malformed_arguments_are_refused()
    {
        using var scope = NewDisposeScope();
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        var h = lm.Config.HiddenSize;
        Assert.Throws<ArgumentException>(() => lm.Forward(zeros([5, h])));                      // no batch axis
        Assert.Throws<ArgumentException>(() => lm.Forward(zeros([1, 5, h + 1])));               // wrong width
        Assert.Throws<ArgumentException>(() => lm.Forward(zeros([1, 0, h])));                   // no positions
        Assert.Throws<ArgumentException>(() => lm.Forward(zeros([1, 5, h], ScalarType.Int64))); // not embeddings
        Assert.Throws<ArgumentException>(() => lm.Forward(zeros([2, 5, h]), ones([2, 4])));     // mask shape
    }
}
