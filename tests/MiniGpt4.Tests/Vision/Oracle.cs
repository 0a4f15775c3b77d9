using System.Text.Json;
using MiniGpt4.Bridge;
using MiniGpt4.Tests.Support;
using MiniGpt4.Vision;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Vision;

/// <summary>The oracle's tiny model: paths, configurations (read from its model_config.json) and arrays as tensors.</summary>
internal static class Oracle
{
    public static readonly string[] Images =
        ["a_gradient_shapes_640x480", "b_tall_100x300", "c_square_224x224", "d_rgba_300x180", "e_gray_50x40"];

    public static string Tiny(string relative) => Fixtures.Require(Path.Combine("oracle/tiny", relative));

    public static string EvaVit => Tiny("eva_vit_g.pth");

    /// <summary>The ViT shape from <c>tiny/model_config.json</c> (<c>vision</c>), for <paramref name="imageSize"/>.</summary>
    public static VisionConfig Vision(int imageSize = 224, string config = "model_config.json")
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Tiny(config)));
        var v = doc.RootElement.GetProperty("vision");
        var patch = doc.RootElement.GetProperty("image").GetProperty("patch_size").GetInt32();
        return new VisionConfig(imageSize, patch, v.GetProperty("width").GetInt32(), v.GetProperty("depth").GetInt32(),
            v.GetProperty("heads").GetInt32(), v.GetProperty("mlp_hidden").GetInt32(), v.GetProperty("layer_norm_eps").GetDouble());
    }

    /// <summary>The Q-Former shape: the tiny BERT config.json plus the ViT width as encoder width.</summary>
    public static QFormerConfig QFormer()
        => QFormerConfig.FromBertConfigJson(Tiny("bert-base-uncased/config.json"), encoderWidth: Vision().Width);

    /// <summary>An oracle array as a float32 CPU tensor.</summary>
    public static Tensor Array(string relativeToOracle)
    {
        var npy = Npy.Read(Fixtures.Require(Path.Combine("oracle", relativeToOracle)));
        return tensor(npy.ToFloat(), npy.Shape);
    }

    public static Tensor Pixels(string image, int size = 224)
        => Array(size == 224 ? $"preprocess/{image}.pixel_values.npy" : $"preprocess_448/{image}.pixel_values.npy");

    /// <summary>Max |a - b| after checking the shapes agree.</summary>
    public static double MaxAbsDiff(Tensor actual, Tensor expected)
    {
        Xunit.Assert.Equal(expected.shape, actual.shape);
        using var scope = NewDisposeScope();
        return (actual.to(ScalarType.Float64).cpu() - expected.to(ScalarType.Float64).cpu()).abs().max().item<double>();
    }
}
