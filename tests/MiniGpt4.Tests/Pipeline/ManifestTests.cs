using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Pipeline;

public class ManifestTests
{
    [Fact]
    public void Empty_manifest_defaults_to_the_real_vicuna_7b_model()
    {
        var m = ModelManifest.Parse("{}", "/models");
        Assert.Equal(ModelVariant.MiniGpt4Vicuna0, m.Variant);
        Assert.Equal((224, 14, 1408, 39, 16, 6144), (m.Vision.ImageSize, m.Vision.PatchSize, m.Vision.Width, m.Vision.Depth, m.Vision.Heads, m.Vision.MlpHidden));
        Assert.Equal("blip2_pretrained_flant5xxl.pth", m.QFormer!.Checkpoint);
        Assert.Equal(32, m.QFormer.NumQueryTokens);
        Assert.Equal("prerained_minigpt4_7b.pth", m.Projection.Checkpoint);
        Assert.Equal(Path.GetFullPath("/models/vicuna-7b"), m.Resolve(m.Llm.Path));
        Assert.False(m.IsLanguageModelOnly);
    }

    [Fact]
    public void Absolute_paths_are_kept()
    {
        var m = ModelManifest.Parse("""{"llm": {"path": "/abs/llama"}, "vision": {}}""", "/models");
        Assert.Equal("/abs/llama", m.Resolve(m.Llm.Path));
    }

    [Fact]
    public void Minigptv2_defaults_to_448_and_lora_alpha_16()
    {
        var m = ModelManifest.Parse("""{"variant": "minigptv2"}""", "/m");
        Assert.Equal(448, m.Vision.ImageSize);
        Assert.Equal(16, m.Lora!.Alpha);
        Assert.Null(m.QFormer);
    }

    [Theory]
    [InlineData("""{"variant": "gpt5"}""", "unknown variant 'gpt5'")]
    [InlineData("""{"vision": {"depth": 0}}""", "vision.depth must be positive")]
    [InlineData("""{"vision": {"image_size": 225}}""", "not a multiple of vision.patch_size")]
    [InlineData("""{"vision": {"width": "big"}}""", "'width' must be an integer")]
    [InlineData("""{"variant": "minigpt4-llama2", "qformer": {}}""", "has no Q-Former")]
    [InlineData("""[1,2]""", "must be a JSON object")]
    [InlineData("""{"vision": """, "invalid JSON")]
    public void Invalid_manifests_name_the_problem(string json, string expected)
    {
        var ex = Assert.Throws<MiniGptConfigurationException>(() => ModelManifest.Parse(json, "/m", "minigpt4.json"));
        Assert.Contains(expected, ex.Message);
        Assert.Contains("minigpt4.json", ex.Message);
    }

    [SkippableFact]
    public void Oracle_manifests_parse()
    {
        var v = ModelManifest.Load(Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json"));
        Assert.Equal(ModelVariant.MiniGpt4Vicuna0, v.Variant);
        Assert.Equal(2, v.Vision.Depth);
        Assert.True(File.Exists(v.Resolve(v.QFormer!.Config!)));
        var l = ModelManifest.Load(Fixtures.Require("oracle/tiny/minigpt4-llama2.json"));
        Assert.Equal(ModelVariant.MiniGpt4Llama2, l.Variant);
        Assert.True(File.Exists(l.Resolve(l.Projection.Checkpoint)));
        var v2 = ModelManifest.Load(Fixtures.Require("oracle/tiny/minigptv2/minigptv2.json"));
        Assert.Equal(ModelVariant.MiniGptV2, v2.Variant);
        Assert.True(File.Exists(v2.Resolve(v2.Vision.Checkpoint)));
        Assert.True(Directory.Exists(v2.Resolve(v2.Llm.Path)));
    }

    [SkippableFact]
    public void A_plain_hugging_face_folder_is_a_language_model_only_manifest()
    {
        var m = ModelManifest.Load(Fixtures.Require("oracle/tiny/llama"));
        Assert.True(m.IsLanguageModelOnly);
        Assert.True(File.Exists(Path.Combine(m.Resolve(m.Llm.Path), "config.json")));
    }

    [Fact]
    public void Missing_manifest_is_a_configuration_error()
    {
        var ex = Assert.Throws<MiniGptConfigurationException>(() => ModelManifest.Load("/nonexistent/minigpt4.json"));
        Assert.Contains("/nonexistent/minigpt4.json", ex.Message);
    }
}
