using MiniGpt4.Bridge;
using MiniGpt4.Runtime;
using MiniGpt4.Language;
using MiniGpt4.Language.Kernels;
using MiniGpt4.Language.Quantization;
using MiniGpt4.Tests.Language.Kernels;
using MiniGpt4.Tests.Support;
using MiniGpt4.Vision;
using MiniGpt4.Weights;
using Xunit;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language.Quantization;

/// <summary>
/// A bfloat16 model over float16 files keeps the projections in the files' memory map (<see cref="QuantFormat.F16"/>)
/// and rounds each weight as a product reads it: every logit equals that of the same file converted while loading,
/// alone and in batches, at one and two threads, through the decode kernels and through libtorch's prefill.
/// </summary>
public sealed class Float16WeightsTests
{
    private static readonly int[] Prompt = [1, 15, 200, 33, 7, 412];

    /// <summary>A seeded random model written as a Hugging Face folder of float16 weights.</summary>
    private static string WriteFloat16Folder(TempDir dir, bool tied, string? bf16Key = null)
    {
        var config = new LlamaConfig(HiddenSize: 256, IntermediateSize: 768, NumHiddenLayers: 2, NumAttentionHeads: 8, NumKeyValueHeads: 2,
            RmsNormEps: 1e-5, RopeTheta: 10000, MaxPositionEmbeddings: 512, VocabSize: 8192, TieWordEmbeddings: tied);
        using var scope = NewDisposeScope();
        using var lm = CpuDecoderTests.RandomModel(config, ScalarType.Float32, seed: 21);
        var tensors = lm.state_dict().Where(kv => !kv.Key.Contains("rotary", StringComparison.Ordinal))
            .ToDictionary(kv => kv.Key, kv => kv.Value.to(kv.Key == bf16Key ? ScalarType.BFloat16 : ScalarType.Float16).contiguous());
        SafetensorsWriter.Write(dir.File("model.safetensors"), tensors);
        File.WriteAllText(dir.File("config.json"), $$"""
            {"architectures":["LlamaForCausalLM"],"model_type":"llama","hidden_size":256,"intermediate_size":768,"num_hidden_layers":2,
             "num_attention_heads":8,"num_key_value_heads":2,"rms_norm_eps":1e-5,"rope_theta":10000.0,"max_position_embeddings":512,
             "vocab_size":8192,"tie_word_embeddings":{{(tied ? "true" : "false")}},"torch_dtype":"float16","bos_token_id":1,"eos_token_id":2}
            """);
        return dir.Path;
    }

    private static LlamaForCausalLM Load(string folder, bool shareFileMemory, bool keepFloat16 = true)
    {
        using var source = WeightFiles.Open(folder, shareFileMemory);
        return LlamaForCausalLM.Load(LlamaConfig.FromFile(folder), source, ScalarType.BFloat16, CPU, keepFloat16: keepFloat16);
    }

    [SkippableTheory]
    [InlineData(false)]
    [InlineData(true)]
    public void Float16_projections_stay_in_the_file_and_give_the_logits_of_converted_ones(bool tied)
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the float16 path needs the CPU decoder (AVX-512F or AVX2 + FMA)");
        using var dir = new TempDir();
        var folder = WriteFloat16Folder(dir, tied);
        using var kept = Load(folder, shareFileMemory: true);
        using var converted = Load(folder, shareFileMemory: false);

        Assert.Equal(new LlamaQuantization(QuantFormat.F16, tied ? QuantFormat.None : QuantFormat.F16), kept.Quantization);
        Assert.All(kept.Projections, p => Assert.Equal(ScalarType.Float16, p.Weight.dtype));
        Assert.Null(converted.Quantization); // not shared: converted while loading, as before
        Assert.All(converted.Projections, p => Assert.Equal(ScalarType.BFloat16, p.Weight.dtype));
        using (var asked = Load(folder, shareFileMemory: true, keepFloat16: false)) // MiniGptLoadOptions.KeepFloat16Weights = false
        {
            Assert.Null(asked.Quantization);
            Assert.Equal(Logits(converted), Logits(asked));
        }

        foreach (var decoderPrefill in new[] { false, true })
        {
            kept.DecoderPrefill = converted.DecoderPrefill = decoderPrefill;
            Assert.Equal(Logits(converted), Logits(kept));
        }
        foreach (var p in kept.Projections) p.Scratch = null; // a new bf16 tensor per product instead of the model's buffer
        kept.DecoderPrefill = converted.DecoderPrefill = false;
        Assert.Equal(Logits(converted), Logits(kept));
    }

    [SkippableFact]
    public void A_file_that_mixes_dtypes_is_converted_as_before()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the float16 path needs the CPU decoder (AVX-512F or AVX2 + FMA)");
        using var dir = new TempDir();
        var folder = WriteFloat16Folder(dir, tied: false, bf16Key: "model.layers.1.mlp.down_proj.weight");
        using var lm = Load(folder, shareFileMemory: true);
        Assert.Null(lm.Quantization);
        Assert.All(lm.Projections, p => Assert.Equal(ScalarType.BFloat16, p.Weight.dtype));
    }

    [SkippableFact]
    public void Batched_rows_and_thread_counts_give_each_row_the_logits_of_the_converted_model()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the float16 path needs the CPU decoder (AVX-512F or AVX2 + FMA)");
        using var dir = new TempDir();
        var folder = WriteFloat16Folder(dir, tied: false);
        using var kept = Load(folder, shareFileMemory: true);
        using var converted = Load(folder, shareFileMemory: false);
        int[] next = [11, 2222, 8000, 4, 512, 73, 6001, 19];
        var threadsBefore = get_num_threads();
        try
        {
            foreach (var threads in new[] { 1, 2 })
                foreach (var rows in new[] { 1, 3, 8 })
                    Assert.Equal(BatchStep(converted, next[..rows], threads), BatchStep(kept, next[..rows], threads));
        }
        finally { set_num_threads(threadsBefore); }
    }

    [SkippableFact]
    public unsafe void The_native_rounding_equals_the_managed_one_for_every_float16_value()
    {
        Skip.IfNot(NativeKernels.HasHalfToBf16, "the native library or AVX-512F is not available here");
        var n = 65536 + 13; // every bit pattern (NaNs, infinities, subnormals), then a tail shorter than a vector
        var half = Enumerable.Range(0, n).Select(i => (ushort)i).ToArray();
        var native = new ushort[n];
        var managed = new ushort[n];
        fixed (ushort* h = half, a = native, m = managed)
        {
            NativeKernels.HalfToBf16(h, a, n);
            Runtime.FloatConversion.ConvertOnThisThread((nint)h, ScalarType.Float16, (nint)m, ScalarType.BFloat16, n);
        }
        Assert.Equal(managed, native);
    }

    [Fact]
    public void A_float16_Q_Former_keeps_its_linear_weights_in_the_file_and_projects_as_the_converted_one()
    {
        using var dir = new TempDir();
        var config = new QFormerConfig(Hidden: 64, Layers: 3, Heads: 4, Intermediate: 96, NumQueryTokens: 8, EncoderWidth: 48);
        string blip2 = dir.File("blip2.safetensors"), stage2 = dir.File("stage2.safetensors");
        using (var scope = NewDisposeScope())
        using (var random = new QFormerProjector(config, 80, ScalarType.Float32, CPU))
        {
            using var g = new TorchSharp.torch.Generator(5);
            using (no_grad())
                foreach (var (_, p) in random.named_parameters()) p.copy_(randn(p.shape, generator: g).mul_(0.05));
            var all = random.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float16).contiguous());
            SafetensorsWriter.Write(blip2, all.Where(kv => !kv.Key.StartsWith("llama_proj", StringComparison.Ordinal)).ToDictionary());
            SafetensorsWriter.Write(stage2, all.Where(kv => kv.Key.StartsWith("llama_proj", StringComparison.Ordinal)).ToDictionary());
        }
        using var tokens = randn(2, 17, 48);
        QFormerProjector Load(bool share)
        {
            using var b = WeightFiles.Open(blip2, share);
            using var s = WeightFiles.Open(stage2, share);
            return QFormerProjector.Load(b, s, config, ScalarType.BFloat16, CPU);
        }
        using var kept = Load(share: true);
        using var converted = Load(share: false);
        Assert.True(kept.StoredHalf);
        Assert.False(converted.StoredHalf);
        Assert.Equal(ScalarType.Float16, kept.state_dict()["Qformer.bert.encoder.layer.0.crossattention.self.key.weight"].dtype);
        using var a = kept.Project(tokens);
        using var b = converted.Project(tokens);
        Assert.Equal(0, Oracle.MaxAbsDiff(a, b));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    public unsafe void Rounding_a_matrix_larger_than_the_caches_gives_the_managed_values_whatever_the_alignment(int offset)
    {
        // Above HalfRounding.BypassCachesBytes the stores bypass the caches when the destination is 64-byte aligned.
        const int n = 5_000_017;
        using var scope = NewDisposeScope();
        using var g = new TorchSharp.torch.Generator(8);
        using var half = randn([n], generator: g).to(ScalarType.Float16);
        using var buffer = empty([n + 1], ScalarType.BFloat16);
        using var dst = buffer.narrow(0, offset, n);
        Assert.True(n * 2L > HalfRounding.BypassCachesBytes);
        HalfRounding.Round(half, dst);
        var expected = new ushort[n];
        fixed (ushort* e = expected)
            FloatConversion.ConvertOnThisThread(TensorMath.Address(half), ScalarType.Float16, (nint)e, ScalarType.BFloat16, n);
        var actual = new ushort[n];
        fixed (ushort* a = actual) Buffer.MemoryCopy((void*)TensorMath.Address(dst), a, n * 2L, n * 2L);
        Assert.Equal(expected, actual);
    }

    [SkippableTheory]
    [InlineData(31, 1)]
    [InlineData(101, 2)]
    [InlineData(295, 1)]
    [InlineData(1000, 2)]
    public unsafe void Float16_rows_give_the_bf16_products_of_the_rounded_rows_natively_and_through_the_buffer(int n, int threads)
    {
        Skip.IfNot(GemvMath.Lanes > 0, "no vector path here");
        const int outFeatures = 29; // not a multiple of the tiles' three or four rows
        var rng = new Random(n);
        var half = Enumerable.Range(0, outFeatures * n).Select(_ => BitConverter.HalfToUInt16Bits((Half)(rng.NextDouble() * 2 - 1))).ToArray();
        var rounded = new ushort[half.Length];
        fixed (ushort* h = half, r = rounded)
            Runtime.FloatConversion.ConvertOnThisThread((nint)h, ScalarType.Float16, (nint)r, ScalarType.BFloat16, half.Length);
        foreach (var rows in new[] { 1, 2, 3, 5, 8, 9 })
        {
            var x = Enumerable.Range(0, rows * n).Select(_ => GemvMath.FloatToBf16((float)(rng.NextDouble() * 2 - 1))).ToArray();
            var expected = new float[rows * outFeatures];
            fixed (ushort* r = rounded, xp = x)
            fixed (float* e = expected)
                GemvMath.RowsBf16(r, xp, e, n, outFeatures, rows, 0, outFeatures, native: false);
            foreach (var native in new[] { true, false })
            {
                var y = new float[rows * outFeatures];
                using var work = new GemvWork { NativeF16 = native };
                fixed (ushort* h = half, xp = x)
                fixed (float* yp = y)
                    work.Begin((nint)xp, n, rows, bf16: true).Add(new DecodeWeight(QuantFormat.F16, (nint)h), (nint)yp, outFeatures).Run(threads);
                Assert.True(expected.AsSpan().SequenceEqual(y), $"n {n}, {rows} rows, native {native}: differs from the bf16 product of the rounded rows");
            }
        }
    }

    [Fact]
    public void A_float16_vision_tower_keeps_its_linear_weights_in_the_file_and_encodes_as_the_converted_one()
    {
        using var dir = new TempDir();
        var config = new VisionConfig(ImageSize: 56, PatchSize: 14, Width: 64, Depth: 2, Heads: 4, MlpHidden: 160);
        var file = dir.File("eva_vit_g.safetensors");
        using (var scope = NewDisposeScope())
        using (var random = new EvaVisionTransformer(config, ScalarType.Float32, CPU))
        {
            using var g = new TorchSharp.torch.Generator(3);
            using (no_grad())
                foreach (var (_, p) in random.named_parameters()) p.copy_(randn(p.shape, generator: g).mul_(0.05));
            SafetensorsWriter.Write(file, random.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float16).contiguous()));
        }
        using var pixels = randn(2, 3, 56, 56);
        using var sharedSource = WeightFiles.Open(file, shareFileMemory: true);
        using var copiedSource = WeightFiles.Open(file, shareFileMemory: false);
        using var kept = EvaVisionTransformer.Load(sharedSource, config, ScalarType.BFloat16, CPU);
        using var converted = EvaVisionTransformer.Load(copiedSource, config, ScalarType.BFloat16, CPU);

        Assert.True(kept.StoredHalf);
        Assert.False(converted.StoredHalf);
        Assert.Equal(ScalarType.Float16, kept.state_dict()["blocks.1.mlp.fc2.weight"].dtype);
        Assert.Equal(ScalarType.BFloat16, kept.state_dict()["blocks.1.mlp.fc2.bias"].dtype);
        using var a = kept.Encode(pixels);
        using var b = converted.Encode(pixels);
        Assert.Equal(0, Oracle.MaxAbsDiff(a, b));
        using var again = kept.Encode(pixels); // the buffer now holds the last layer's weight: each product rewrites it
        Assert.Equal(0, Oracle.MaxAbsDiff(a, again));

        // Differentiated (autograd records the products): each product rounds into its own tensor, not the shared buffer.
        Tensor Gradient(EvaVisionTransformer vit)
        {
            using var input = pixels.detach().clone().requires_grad_(true);
            using (var sum = vit.forward(input).sum()) sum.backward();
            return input.grad!.clone();
        }
        using var keptGrad = Gradient(kept);
        using var convertedGrad = Gradient(converted);
        Assert.Equal(0, Oracle.MaxAbsDiff(keptGrad, convertedGrad));
    }

    /// <summary>One decode step of <paramref name="tokens"/>, each a row continuing the prompt's cache.</summary>
    private static float[] BatchStep(LlamaForCausalLM lm, int[] tokens, int threads)
    {
        set_num_threads(1);
        using var s = lm.CreateSession(64);
        s.PrefillTokens(Prompt).Dispose();
        s.ReorderRows(new int[tokens.Length]);
        set_num_threads(threads);
        var logits = new float[tokens.Length * s.VocabSize];
        s.Step(tokens, logits);
        return logits;
    }

    /// <summary>The logits of a prefill and six greedy decode steps, flattened.</summary>
    private static float[] Logits(LlamaForCausalLM lm) => LlamaFixtures.PrefillAndGreedyLogits(lm, Prompt, 6);
}
