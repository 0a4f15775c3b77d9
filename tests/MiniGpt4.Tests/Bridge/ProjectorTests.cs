using MiniGpt4.Bridge;
using MiniGpt4.Tests.Support;
using MiniGpt4.Vision;
using MiniGpt4.Weights;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Bridge;

public class ProjectorTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4; // oracle README: ln_vision / Q-Former / projection outputs, fp32

    public static TheoryData<string> Images() => new(Oracle.Images.Select(i => i.Stem));

    /// <summary>The Q-Former projector of the files <paramref name="blip2"/> and <paramref name="stage2"/> (default: the tiny model's configuration), on the CPU.</summary>
    internal static QFormerProjector LoadQFormer(string blip2, string stage2, QFormerConfig? config = null, ScalarType dtype = ScalarType.Float32)
    {
        using var b = WeightFiles.Open(blip2);
        using var s = WeightFiles.Open(stage2);
        return QFormerProjector.Load(b, s, config ?? Oracle.QFormer(), dtype, CPU);
    }

    private static ConcatProjector LoadConcat(string stage, VisionConfig vision, ScalarType dtype = ScalarType.Float32)
    {
        using var s = WeightFiles.Open(stage);
        return ConcatProjector.Load(s, vision, dtype, CPU);
    }

    private static QFormerProjector LoadVicuna0(ScalarType dtype = ScalarType.Float32)
        => LoadQFormer(Oracle.Tiny("blip2_pretrained_flant5xxl.pth"), Oracle.Tiny("pretrained_minigpt4.pth"), dtype: dtype);

    private static ConcatProjector LoadLlama2(ScalarType dtype = ScalarType.Float32)
        => LoadConcat(Oracle.Tiny("pretrained_minigpt4_llama2.pth"), Oracle.Vision(), dtype);

    private void AssertClose(Tensor actual, string array, double tolerance = Tolerance)
    {
        using var expected = Oracle.Tensor(array);
        var diff = Oracle.MaxAbsDiff(actual, expected);
        output.WriteLine($"{Path.GetFileName(array)}: max abs diff {diff:E2}");
        Assert.True(diff <= tolerance, $"{array} differs by {diff}");
    }

    [SkippableTheory]
    [MemberData(nameof(Images))]
    public void QFormer_path_matches_the_Vicuna0_reference(string img)
    {
        using var vit = Oracle.LoadVit();
        using var projector = LoadVicuna0();
        using var pixels = Oracle.Pixels(img);
        using var tokens = vit.Encode(pixels);
        using (inference_mode())
        {
            using var ln = projector.LnVision(tokens);
            AssertClose(ln, $"tiny/arrays/vicuna0/encode/{img}.ln_vision_out.npy");
            using var q = projector.ProjectionInput(tokens);
            AssertClose(q, $"tiny/arrays/vicuna0/encode/{img}.qformer_out.npy");
        }
        using var proj = projector.Project(tokens);
        AssertClose(proj, $"tiny/arrays/vicuna0/encode/{img}.proj_out.npy");
        Assert.Equal(new long[] { 1, projector.TokensPerImage, projector.OutputDim }, proj.shape);
    }

    [SkippableTheory]
    [MemberData(nameof(Images))]
    public void Concat_path_matches_the_Llama2_reference(string img)
    {
        var (group, _) = AssertConcatPath("pretrained_minigpt4_llama2.pth", "llama2", img, 224);
        Assert.Equal(4, group);
    }

    [SkippableTheory]
    [InlineData("a_gradient_shapes_640x480")]
    [InlineData("b_tall_100x300")]
    public void Concat_path_at_448_pixels_matches_the_MiniGPT_v2_reference(string img)
    {
        var (_, tokensPerImage) = AssertConcatPath("minigptv2/minigptv2_checkpoint.pth", "minigptv2", img, 448);
        Assert.Equal(256, tokensPerImage);
    }

    /// <summary>
    /// The concat projector of <paramref name="checkpoint"/> against the <paramref name="variant"/> reference at
    /// <paramref name="size"/> pixels: proj_in (saved for image a only) and proj_out; returns its group and tokens per image.
    /// </summary>
    private (int Group, int TokensPerImage) AssertConcatPath(string checkpoint, string variant, string img, int size)
    {
        var cfg = Oracle.Vision(size);
        using var vit = Oracle.LoadVit(imageSize: size);
        using var projector = LoadConcat(Oracle.Tiny(checkpoint), cfg);
        using var pixels = Oracle.Pixels(img, size);
        using var tokens = vit.Encode(pixels);
        if (img.StartsWith('a'))
        {
            using var _ = inference_mode();
            using var input = projector.ProjectionInput(tokens);
            AssertClose(input, $"tiny/arrays/{variant}/encode/{img}.proj_in.npy");
        }
        using var proj = projector.Project(tokens);
        AssertClose(proj, $"tiny/arrays/{variant}/encode/{img}.proj_out.npy");
        Assert.Equal(new long[] { 1, projector.TokensPerImage, projector.OutputDim }, proj.shape);
        return (projector.Group, projector.TokensPerImage);
    }

    [SkippableFact]
    public void Projectors_treat_each_image_of_a_batch_alone()
    {
        using var vit = Oracle.LoadVit();
        using var qformer = LoadVicuna0();
        using var concat = LoadLlama2();
        using var a = Oracle.Pixels("a_gradient_shapes_640x480");
        using var d = Oracle.Pixels("d_rgba_300x180");
        using var ad = cat([a, d]);
        using var tokens = vit.Encode(ad);
        foreach (var (projector, variant) in new (ProjectorModule, string)[] { (qformer, "vicuna0"), (concat, "llama2") })
        {
            using var proj = projector.Project(tokens);
            using var row0 = proj.narrow(0, 0, 1);
            using var row1 = proj.narrow(0, 1, 1);
            AssertClose(row0, $"tiny/arrays/{variant}/encode/a_gradient_shapes_640x480.proj_out.npy");
            AssertClose(row1, $"tiny/arrays/{variant}/encode/d_rgba_300x180.proj_out.npy");
        }
    }

    [SkippableFact]
    public void QFormer_configuration_is_read_from_the_BERT_config_json()
    {
        var cfg = Oracle.QFormer();
        Assert.Equal(new QFormerConfig(Hidden: 48, Layers: 4, Heads: 4, Intermediate: 112, CrossAttentionFreq: 2, Eps: 1e-12,
            NumQueryTokens: 32, EncoderWidth: 32), cfg);
        Assert.True(cfg.HasCrossAttention(0));
        Assert.False(cfg.HasCrossAttention(1));
        Assert.True(cfg.HasCrossAttention(2));
        // Without overrides the BLIP-2 values MiniGPT-4 hard-codes apply; explicit values win.
        var path = Oracle.Tiny("bert-base-uncased/config.json");
        Assert.Equal((32, 2, 1408), (QFormerConfig.FromBertConfigJson(path).NumQueryTokens,
            QFormerConfig.FromBertConfigJson(path).CrossAttentionFreq, QFormerConfig.FromBertConfigJson(path).EncoderWidth));
        Assert.Equal(8, QFormerConfig.FromBertConfigJson(path, numQueryTokens: 8).NumQueryTokens);
    }

    [Fact]
    public void A_BERT_config_with_another_activation_is_refused()
    {
        using var tmp = new TempDir();
        var path = tmp.File("config.json");
        File.WriteAllText(path, """{"hidden_size": 48, "num_attention_heads": 4, "hidden_act": "gelu_new"}""");
        var ex = Assert.Throws<MiniGptConfigurationException>(() => QFormerConfig.FromBertConfigJson(path));
        Assert.Contains("gelu_new", ex.Message);
        File.WriteAllText(path, """{"hidden_size": 50, "num_attention_heads": 4}""");
        Assert.Throws<MiniGptConfigurationException>(() => QFormerConfig.FromBertConfigJson(path));
        File.WriteAllText(path, "not json");
        Assert.Throws<MiniGptConfigurationException>(() => QFormerConfig.FromBertConfigJson(path));
    }

    [SkippableFact]
    public void A_stage_checkpoint_of_another_variant_is_refused_naming_llama_proj()
    {
        // Fixtures first, outside Assert.Throws: a missing fixture skips (or fails on CI) by itself.
        var vicuna0Stage = Oracle.Tiny("pretrained_minigpt4.pth");
        var vision = Oracle.Vision();
        // The Vicuna-0 projection takes the Q-Former's 48 outputs, not whole 32-wide ViT tokens.
        var ex = Assert.Throws<MiniGptWeightsException>(() => LoadConcat(vicuna0Stage, vision));
        output.WriteLine(ex.Message);
        Assert.Equal("llama_proj.weight", ex.Key);
        // And the Llama-2 projection (128 inputs) does not fit the Q-Former's 48-wide output.
        var ex2 = Assert.Throws<MiniGptWeightsException>(() =>
            LoadQFormer(Oracle.Tiny("blip2_pretrained_flant5xxl.pth"), Oracle.Tiny("pretrained_minigpt4_llama2.pth")));
        Assert.Equal("llama_proj.weight", ex2.Key);
    }

    [SkippableFact]
    public void A_QFormer_configuration_that_does_not_fit_the_file_is_refused_naming_the_key()
    {
        var cfg = Oracle.QFormer() with { Intermediate = 113 };
        var ex = Assert.Throws<MiniGptWeightsException>(() =>
            LoadQFormer(Oracle.Tiny("blip2_pretrained_flant5xxl.pth"), Oracle.Tiny("pretrained_minigpt4.pth"), cfg));
        output.WriteLine(ex.Message);
        Assert.Contains("intermediate_query", ex.Message);
    }

    [SkippableFact]
    public void Bfloat16_projectors_run_with_ln_vision_in_float32()
    {
        const string img = "a_gradient_shapes_640x480";
        using var vit = Oracle.LoadVit(ScalarType.BFloat16);
        using var qformer = LoadVicuna0(ScalarType.BFloat16);
        using var concat = LoadLlama2(ScalarType.BFloat16);
        Assert.Equal(ScalarType.Float32, qformer.state_dict()["ln_vision.weight"].dtype);
        Assert.Equal(ScalarType.BFloat16, qformer.state_dict()["llama_proj.weight"].dtype);
        Assert.Equal(ScalarType.Float32, concat.state_dict()["ln_vision.weight"].dtype);
        using var pixels = Oracle.Pixels(img);
        using var tokens = vit.Encode(pixels);
        foreach (var (projector, array) in new (ProjectorModule, string)[]
                 {
                     (qformer, $"tiny/arrays/vicuna0/encode/{img}.proj_out.npy"),
                     (concat, $"tiny/arrays/llama2/encode/{img}.proj_out.npy"),
                 })
        {
            using var proj = projector.Project(tokens);
            Assert.Equal(ScalarType.BFloat16, proj.dtype);
            using var expected = Oracle.Tensor(array);
            using var scale = expected.abs().max();
            var diff = Oracle.MaxAbsDiff(proj, expected);
            output.WriteLine($"bf16 {Path.GetFileName(array)}: max abs diff {diff:E2} (max |x| {scale.item<float>():F2})");
            Assert.True(diff <= 0.05 * scale.item<float>(), $"bf16 {array} differs by {diff}");
        }
    }

    [SkippableFact]
    public void Projecting_leaves_no_tensor_behind()
    {
        using var vit = Oracle.LoadVit();
        using var qformer = LoadVicuna0();
        using var concat = LoadLlama2();
        using var pixels = Oracle.Pixels("c_square_224x224");
        // Warm up once, then count: each call must leave exactly its result alive.
        using (var t = vit.Encode(pixels)) { qformer.Project(t).Dispose(); concat.Project(t).Dispose(); }
        var before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (var i = 0; i < 3; i++)
        {
            using var t = vit.Encode(pixels);
            qformer.Project(t).Dispose();
            concat.Project(t).Dispose();
        }
        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }

    [SkippableFact]
    public void Tokens_of_the_wrong_width_are_refused()
    {
        using var concat = LoadLlama2();
        using var bad = zeros(1, 257, 33);
        Assert.Throws<ArgumentException>(() => concat.Project(bad));
        using var fewer = zeros(1, 17, 32);
        Assert.Throws<ArgumentException>(() => concat.Project(fewer));
    }
}

public class QFormerNamesTests(ITestOutputHelper output)
{
    /// <summary>LAVIS -> Hugging Face names, to present the oracle's BLIP-2 file as HF writes it.</summary>
    private static string? ToHuggingFace(string key)
    {
        if (key == "ln_vision.weight" || key == "ln_vision.bias") return "vision_model.post_layernorm." + key["ln_vision.".Length..];
        if (key.StartsWith("t5_proj.", StringComparison.Ordinal)) return "language_projection." + key["t5_proj.".Length..];
        if (key.StartsWith("Qformer.bert.embeddings.LayerNorm.", StringComparison.Ordinal))
            return "qformer.layernorm." + key["Qformer.bert.embeddings.LayerNorm.".Length..];
        if (key == "Qformer.bert.embeddings.position_ids") return null; // HF drops it
        if (key.StartsWith("Qformer.bert.", StringComparison.Ordinal))
            return "qformer." + key["Qformer.bert.".Length..].Replace("attention.self.", "attention.attention.");
        return key;
    }

    [SkippableFact]
    public void Hugging_Face_BLIP2_names_load_to_the_same_QFormer()
    {
        const string img = "a_gradient_shapes_640x480";
        using var lavis = WeightFiles.Open(Oracle.Tiny("blip2_pretrained_flant5xxl.pth"));
        using var hf = lavis.Renamed(ToHuggingFace);
        Assert.Contains("qformer.encoder.layer.0.crossattention.attention.key.weight", hf.Keys);
        Assert.True(QFormerNames.IsHuggingFace(hf.Keys));
        using var stage2 = WeightFiles.Open(Oracle.Tiny("pretrained_minigpt4.pth"));
        using var vit = Oracle.LoadVit();
        using var projector = QFormerProjector.Load(hf, stage2, Oracle.QFormer(), ScalarType.Float32, CPU);
        var diff = Oracle.ProjectDiff(vit, projector, $"tiny/arrays/vicuna0/encode/{img}.proj_out.npy", img);
        output.WriteLine($"proj_out from HF-named BLIP-2 weights: max abs diff {diff:E2}");
        Assert.True(diff <= 1e-4);
    }

    [Fact]
    public void Hugging_Face_QFormer_names_map_to_LAVIS_names()
    {
        Assert.Equal("Qformer.bert.encoder.layer.3.attention.self.query.bias", QFormerNames.FromHuggingFace("qformer.encoder.layer.3.attention.attention.query.bias"));
        Assert.Equal("Qformer.bert.encoder.layer.2.crossattention.self.key.weight", QFormerNames.FromHuggingFace("qformer.encoder.layer.2.crossattention.attention.key.weight"));
        Assert.Equal("Qformer.bert.encoder.layer.2.crossattention.output.LayerNorm.bias", QFormerNames.FromHuggingFace("qformer.encoder.layer.2.crossattention.output.LayerNorm.bias"));
        Assert.Equal("Qformer.bert.encoder.layer.0.output_query.dense.weight", QFormerNames.FromHuggingFace("qformer.encoder.layer.0.output_query.dense.weight"));
        Assert.Equal("Qformer.bert.embeddings.LayerNorm.weight", QFormerNames.FromHuggingFace("qformer.layernorm.weight"));
        Assert.Equal("Qformer.bert.embeddings.LayerNorm.bias", QFormerNames.FromHuggingFace("qformer.embeddings.layernorm.bias"));
        Assert.Equal("ln_vision.weight", QFormerNames.FromHuggingFace("vision_model.post_layernorm.weight"));
        Assert.Equal("query_tokens", QFormerNames.FromHuggingFace("query_tokens"));
        Assert.Null(QFormerNames.FromHuggingFace("language_projection.weight"));
        Assert.Null(QFormerNames.FromHuggingFace("vision_model.encoder.layers.0.mlp.fc1.weight"));
    }
}
