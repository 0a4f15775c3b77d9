using MiniGpt4.Language;
using MiniGpt4.Language.Quantization;
using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using Xunit;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language.Quantization;

/// <summary>
/// Quantized language models end to end on the oracle's tiny LLaMA: <c>convert</c>'s files load without naming a
/// format and decode exactly like quantizing at load; damaged or mismatched quantized files are typed errors naming
/// the tensor.
/// </summary>
public sealed class QuantizedModelTests
{
    private static readonly int[] Prompt = [1, 15, 200, 33, 7, 412];

    private static string Convert(TempDir dir, MiniGptQuantization q)
    {
        var folder = Fixtures.Require(LlamaFixtures.TinyFolder);
        MiniGptConverter.ConvertQuantizedAsync(folder, dir.Path, q).GetAwaiter().GetResult();
        return Path.Combine(dir.Path, "llm");
    }

    [SkippableTheory]
    [InlineData(MiniGptQuantization.Int8)]
    [InlineData(MiniGptQuantization.Int4)]
    public void A_converted_model_loads_in_its_format_and_decodes_like_quantizing_at_load(MiniGptQuantization q)
    {
        var format = q == MiniGptQuantization.Int8 ? QuantFormat.Q8 : QuantFormat.Q4;
        using var dir = new TempDir();
        var converted = Convert(dir, q);
        using var fromFile = LlamaForCausalLM.Load(converted, ScalarType.BFloat16, CPU);
        Assert.Equal(new LlamaQuantization(format, QuantFormat.Q8), fromFile.Quantization);

        var folder = Fixtures.Require(LlamaFixtures.TinyFolder);
        var config = LlamaConfig.FromFile(folder);
        using var source = WeightFiles.Open(folder);
        using var quantizing = new QuantizingWeightSource(source, LlamaQuantization.For(format), config.TieWordEmbeddings);
        using var atLoad = LlamaForCausalLM.Load(config, quantizing, ScalarType.BFloat16, CPU);

        Assert.Equal(Logits(fromFile), Logits(atLoad)); // same bytes, same kernels: bit-identical
    }

    [SkippableTheory]
    [InlineData(MiniGptQuantization.Int8)]
    [InlineData(MiniGptQuantization.Int4)]
    public void A_prefill_through_libtorch_dequantizes_into_the_models_buffer_with_the_same_results(MiniGptQuantization q)
    {
        using var dir = new TempDir();
        using var lm = LlamaForCausalLM.Load(Convert(dir, q), ScalarType.BFloat16, CPU);
        lm.DecoderPrefill = false; // the dequantizing path (the default on CPUs with AVX512-BF16)
        Assert.All(lm.Projections, p => Assert.NotNull(p.Scratch));
        var reused = Logits(lm);
        var again = Logits(lm); // the buffer holds the last projection's weight now: each product rewrites it
        foreach (var p in lm.Projections) p.Scratch = null; // a new dense tensor per product
        Assert.Equal(reused, again);
        Assert.Equal(reused, Logits(lm));
    }

    [Theory]
    [InlineData(ScalarType.Float16)]
    [InlineData(ScalarType.BFloat16)]
    [InlineData(ScalarType.Float32)]
    public void Quantizing_a_weight_leaves_no_tensor_but_its_results(ScalarType dtype)
    {
        // Counted without a collection: a converted copy left to the finalizer is what made quantizing a 13B model at
        // load run out of memory (every layer's float32 copy stayed alive).
        using var weight = randn([64, 512]).to(dtype);
        var before = Tensor.TotalCount;
        foreach (var format in new[] { QuantFormat.Q8, QuantFormat.Q4 })
        {
            var (packed, scales) = QuantizedWeight.Quantize(format, weight);
            packed.Dispose();
            scales.Dispose();
        }
        Assert.Equal(before, Tensor.TotalCount);
    }

    [SkippableFact]
    public void Quantized_decoding_stays_close_to_the_float_model_and_8_bit_closer_than_4_bit()
    {
        var folder = Fixtures.Require(LlamaFixtures.TinyFolder);
        using var reference = LlamaForCausalLM.Load(folder, ScalarType.Float32, CPU);
        var exact = Logits(reference);
        double Error(QuantFormat f)
        {
            var config = LlamaConfig.FromFile(folder);
            using var source = WeightFiles.Open(folder);
            using var quantizing = new QuantizingWeightSource(source, LlamaQuantization.For(f), config.TieWordEmbeddings);
            using var lm = LlamaForCausalLM.Load(config, quantizing, ScalarType.BFloat16, CPU);
            return exact.Zip(Logits(lm), (a, b) => Math.Abs(a - b)).Max();
        }
        var (e8, e4) = (Error(QuantFormat.Q8), Error(QuantFormat.Q4));
        var range = exact.Max() - exact.Min();
        Assert.True(e8 < e4, $"8-bit max logit error {e8} is not below 4-bit's {e4}");
        Assert.True(e4 < 0.5 * range, $"4-bit max logit error {e4} is not small against the logits' range {range}");
    }

    [SkippableFact]
    public void A_scale_tensor_of_the_wrong_size_is_a_weights_error_naming_it()
    {
        using var dir = new TempDir();
        var converted = Convert(dir, MiniGptQuantization.Int8);
        const string key = "model.layers.1.mlp.down_proj.q8_scales";
        var bad = Rewrite(converted, dir.File("bad"), key, t => t.narrow(1, 0, t.shape[1] - 1));
        var e = Assert.Throws<MiniGptWeightsException>(() => LlamaForCausalLM.Load(bad, ScalarType.BFloat16, CPU).Dispose());
        Assert.Equal(key, e.Key);
        Assert.Contains("int8", e.Message);
    }

    [SkippableFact]
    public void A_layer_in_another_format_is_a_weights_error_naming_it()
    {
        using var dir = new TempDir();
        var converted = Convert(dir, MiniGptQuantization.Int8);
        var bad = dir.File("mixed");
        Directory.CreateDirectory(bad);
        File.Copy(Path.Combine(converted, "config.json"), Path.Combine(bad, "config.json"));
        using (var source = WeightFiles.Open(converted))
        {
            var tensors = source.Keys.Where(k => !k.StartsWith("model.layers.1.self_attn.k_proj.", StringComparison.Ordinal))
                .ToDictionary(k => k, k => source.Load(k));
            using var dense = zeros(64, 64, dtype: ScalarType.BFloat16);
            var (packed, scales) = QuantizedWeight.Quantize(QuantFormat.Q4, dense);
            tensors["model.layers.1.self_attn.k_proj.q4_weight"] = packed;
            tensors["model.layers.1.self_attn.k_proj.q4_scales"] = scales;
            SafetensorsWriter.Write(Path.Combine(bad, "model.safetensors"), tensors);
            foreach (var t in tensors.Values) t.Dispose();
        }
        var e = Assert.Throws<MiniGptWeightsException>(() => LlamaForCausalLM.Load(bad, ScalarType.BFloat16, CPU).Dispose());
        Assert.Equal("model.layers.1.self_attn.k_proj.q8_weight", e.Key);
    }

    [SkippableFact]
    public void A_truncated_quantized_file_is_a_weights_error_naming_a_tensor()
    {
        using var dir = new TempDir();
        var converted = Convert(dir, MiniGptQuantization.Int4);
        var bad = Rewrite(converted, dir.File("cut"), null, t => t);
        var file = Path.Combine(bad, "model.safetensors");
        using (var fs = new FileStream(file, FileMode.Open)) fs.SetLength(fs.Length - 1000);
        var e = Assert.Throws<MiniGptWeightsException>(() => LlamaForCausalLM.Load(bad, ScalarType.BFloat16, CPU).Dispose());
        Assert.NotNull(e.Key);
        Assert.Contains("truncated", e.Message);
    }

    [SkippableFact]
    public void A_quantized_file_refuses_float32_activations_with_a_configuration_error()
    {
        using var dir = new TempDir();
        var converted = Convert(dir, MiniGptQuantization.Int8);
        Assert.Throws<MiniGptConfigurationException>(() => LlamaForCausalLM.Load(converted, ScalarType.Float32, CPU).Dispose());
    }

    /// <summary>Copies a converted model into one <c>model.safetensors</c> in <paramref name="target"/>, changing <paramref name="key"/>.</summary>
    private static string Rewrite(string converted, string target, string? key, Func<Tensor, Tensor> change)
    {
        Directory.CreateDirectory(target);
        File.Copy(Path.Combine(converted, "config.json"), Path.Combine(target, "config.json"));
        using var source = WeightFiles.Open(converted);
        var tensors = source.Keys.ToDictionary(k => k, k =>
        {
            using var t = source.Load(k);
            return k == key ? change(t).contiguous() : t.clone();
        });
        SafetensorsWriter.Write(Path.Combine(target, "model.safetensors"), tensors);
        foreach (var t in tensors.Values) t.Dispose();
        return target;
    }

    /// <summary>The logits of a prefill and eight greedy decode steps, flattened.</summary>
    private static float[] Logits(LlamaForCausalLM lm) => LlamaFixtures.PrefillAndGreedyLogits(lm, Prompt, 8);
}
