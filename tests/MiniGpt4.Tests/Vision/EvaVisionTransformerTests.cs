using MiniGpt4.Tests.Support;
using MiniGpt4.Vision;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Vision;

public class EvaVisionTransformerTests(ITestOutputHelper output)
{
    private const double Tolerance = 1e-4; // oracle README: ViT outputs, fp32
    private const string A = Oracle.ImageA;

    private static string Encoded(string img, string array, string variant = "vicuna0") => $"tiny/arrays/{variant}/encode/{img}.{array}.npy";

    /// <summary>Max |vit(img) - reference array|, logged under <paramref name="label"/>.</summary>
    private double Diff(EvaVisionTransformer vit, string array, string label, string img = A, int size = 224)
    {
        var diff = Oracle.EncodeDiff(vit, array, img, size);
        output.WriteLine($"{label} max abs diff {diff:E2}");
        return diff;
    }

    [SkippableFact]
    public void Vit_output_matches_the_reference_for_image_a()
    {
        using var vit = Oracle.LoadVit();
        var diff = Diff(vit, Encoded(A, "vit_out"), "vit_out");
        Assert.True(diff <= Tolerance, $"vit_out differs by {diff}");
    }

    [SkippableFact]
    public void Hugging_Face_Blip2VisionModel_names_and_fused_qkv_bias_load_to_the_same_model()
    {
        using var hf = new HuggingFaceVisionView(MiniGpt4.Weights.WeightFiles.Open(Oracle.EvaVit));
        Assert.Contains("vision_model.encoder.layers.0.self_attn.qkv.bias", hf.Keys);
        Assert.DoesNotContain(hf.Keys, k => k.Contains("q_bias"));
        using var vit = EvaVisionTransformer.Load(hf, Oracle.Vision(), ScalarType.Float32, CPU);
        var diff = Diff(vit, Encoded(A, "vit_out"), "HF-named vit_out");
        Assert.True(diff <= Tolerance, $"vit_out differs by {diff}");
    }

    [SkippableFact]
    public void Depth_comes_from_the_configuration_and_later_blocks_in_the_file_are_ignored()
    {
        // The tiny file stores 2 blocks; a depth-1 model must ignore block 1 and equal the reference after block 0.
        using var vit = Oracle.LoadVit(config: Oracle.Vision() with { Depth = 1 });
        var diff = Diff(vit, Encoded(A, "vit_block0_out"), "vit_block0_out");
        Assert.True(diff <= Tolerance, $"vit_block0_out differs by {diff}");
    }

    [SkippableFact]
    public void A_batch_gives_the_same_tokens_as_single_images()
    {
        using var vit = Oracle.LoadVit();
        using var a = Oracle.Pixels(A);
        using var b = Oracle.Pixels(Oracle.ImageB);
        using var ab = cat([a, b]);
        using var batch = vit.Encode(ab);
        using var ea = Oracle.Tensor(Encoded(A, "vit_out"));
        using var row0 = batch.narrow(0, 0, 1);
        Assert.True(Oracle.MaxAbsDiff(row0, ea) <= Tolerance);
        using var row1 = batch.narrow(0, 1, 1);
        using var single = vit.Encode(b);
        Assert.True(Oracle.MaxAbsDiff(row1, single) <= 1e-5);
    }

    [SkippableFact]
    public void Float16_model_runs_and_stays_close_to_float32()
    {
        using var vit = Oracle.LoadVit(ScalarType.Float16);
        Assert.Equal(ScalarType.Float16, vit.state_dict()["blocks.0.mlp.fc1.weight"].dtype);
        var diff = Diff(vit, Encoded(A, "vit_out"), "fp16 vit_out"); // the tokens are float32
        Assert.True(diff <= 0.02, $"fp16 vit_out differs by {diff}");
    }

    [Fact]
    public void The_real_EVA_ViT_g_shapes_run()
    {
        // Real dimensions (width 1408, 16 heads of 88, MLP 6144), one block to stay small: shapes only.
        var cfg = new VisionConfig(Depth: 1);
        using var vit = new EvaVisionTransformer(cfg, ScalarType.BFloat16, CPU);
        using (no_grad()) foreach (var (_, p) in vit.named_parameters()) p.normal_(0, 0.02);
        using var pixels = randn(2, 3, 224, 224);
        using var tokens = vit.Encode(pixels);
        Assert.Equal(new long[] { 2, 257, 1408 }, tokens.shape);
        Assert.Contains("blocks.0.attn.qkv.weight", vit.state_dict().Keys);
        Assert.Equal(new long[] { 4224, 1408 }, vit.state_dict()["blocks.0.attn.qkv.weight"].shape);
        Assert.Equal(new long[] { 6144, 1408 }, vit.state_dict()["blocks.0.mlp.fc1.weight"].shape);
        using var finite = tokens.isfinite().all();
        Assert.True(finite.item<bool>());
    }

    [SkippableFact]
    public void Position_embedding_is_interpolated_bicubically_for_448_pixels()
    {
        using var vit = Oracle.LoadVit(imageSize: 448);
        using var expected = Oracle.Tensor("tiny/arrays/minigptv2/interpolated_pos_embed.npy");
        var diff = Oracle.MaxAbsDiff(vit.state_dict()["pos_embed"], expected);
        output.WriteLine($"interpolated pos_embed max abs diff {diff:E2}");
        Assert.True(diff <= 1e-6, $"interpolated pos_embed differs by {diff}");
    }

    [SkippableTheory]
    [InlineData("a_gradient_shapes_640x480")]
    [InlineData("b_tall_100x300")]
    public void Vit_output_at_448_pixels_matches_the_MiniGPT_v2_reference(string img)
    {
        using var vit = Oracle.LoadVit(imageSize: 448);
        var diff = Diff(vit, Encoded(img, "vit_out", "minigptv2"), $"{img} v2 vit_out", img, 448);
        Assert.True(diff <= Tolerance, $"v2 vit_out differs by {diff}");
    }

    [SkippableFact]
    public void Weights_of_the_wrong_shape_are_refused_naming_the_key()
    {
        // The configuration's MLP is one wider than the file's: fc1/fc2 of block 0 cannot load.
        var cfg = Oracle.Vision() with { MlpHidden = Oracle.Vision().MlpHidden + 1 };
        var ex = Assert.Throws<MiniGptWeightsException>(() => Oracle.LoadVit(config: cfg));
        output.WriteLine(ex.Message);
        Assert.Contains("mlp.fc", ex.Message);
    }

    [SkippableFact]
    public void A_depth_beyond_the_file_is_refused()
    {
        var cfg = Oracle.Vision() with { Depth = 3 };
        var ex = Assert.Throws<MiniGptWeightsException>(() => Oracle.LoadVit(config: cfg));
        Assert.Contains("3", ex.Message);
    }

    [SkippableFact]
    public void Pixels_of_another_size_are_refused()
    {
        using var vit = Oracle.LoadVit();
        using var pixels = zeros(1, 3, 448, 448);
        Assert.Throws<MiniGptImageException>(() => vit.Encode(pixels));
    }

    [SkippableFact]
    public void Bfloat16_model_runs_and_stays_close_to_float32()
    {
        using var vit = Oracle.LoadVit(ScalarType.BFloat16);
        // Linear/conv weights are bf16; norms, embeddings and the residual stream (the tokens) stay float32.
        Assert.Equal(ScalarType.BFloat16, vit.state_dict()["blocks.0.attn.qkv.weight"].dtype);
        Assert.Equal(ScalarType.Float32, vit.state_dict()["blocks.0.norm1.weight"].dtype);
        Assert.Equal(ScalarType.Float32, vit.state_dict()["pos_embed"].dtype);
        using var expected = Oracle.Tensor(Encoded(A, "vit_out"));
        using var scale = expected.abs().max();
        var diff = Diff(vit, Encoded(A, "vit_out"), $"bf16 vit_out (max |x| {scale.item<float>():F2})");
        // bf16 keeps 8 significant bits: allow a few percent of the activation range after two blocks.
        Assert.True(diff <= 0.05 * scale.item<float>(), $"bf16 vit_out differs by {diff}");
    }

    [Fact]
    public void Position_embedding_of_the_same_grid_is_returned_unchanged()
    {
        using var pe = randn(1, 17, 8);
        using var same = PositionEmbedding.Interpolate(pe, 4);
        Assert.Equal(0.0, Oracle.MaxAbsDiff(same, pe));
        using var bigger = PositionEmbedding.Interpolate(pe, 8);
        Assert.Equal(new long[] { 1, 65, 8 }, bigger.shape);
        // The class-token row is never resized.
        using var cls0 = bigger.narrow(1, 0, 1);
        using var cls1 = pe.narrow(1, 0, 1);
        Assert.Equal(0.0, Oracle.MaxAbsDiff(cls0, cls1));
    }

    [Fact]
    public void Hugging_Face_vision_names_map_to_LAVIS_names()
    {
        Assert.Equal("cls_token", EvaVitNames.FromHuggingFace("embeddings.class_embedding"));
        Assert.Equal("pos_embed", EvaVitNames.FromHuggingFace("embeddings.position_embedding"));
        Assert.Equal("patch_embed.proj.weight", EvaVitNames.FromHuggingFace("embeddings.patch_embedding.weight"));
        Assert.Equal("blocks.7.norm1.bias", EvaVitNames.FromHuggingFace("encoder.layers.7.layer_norm1.bias"));
        Assert.Equal("blocks.7.attn.qkv.weight", EvaVitNames.FromHuggingFace("encoder.layers.7.self_attn.qkv.weight"));
        Assert.Equal("blocks.7.attn.q_bias", EvaVitNames.FromHuggingFace("encoder.layers.7.self_attn.q_bias"));
        Assert.Equal("blocks.7.attn.proj.weight", EvaVitNames.FromHuggingFace("encoder.layers.7.self_attn.projection.weight"));
        Assert.Equal("blocks.7.norm2.weight", EvaVitNames.FromHuggingFace("encoder.layers.7.layer_norm2.weight"));
        Assert.Equal("blocks.7.mlp.fc2.bias", EvaVitNames.FromHuggingFace("encoder.layers.7.mlp.fc2.bias"));
        Assert.Null(EvaVitNames.FromHuggingFace("post_layernorm.weight"));
    }
}
