using System.Text.Json.Nodes;
using MiniGpt4.Bridge;
using MiniGpt4.Vision;
using TorchSharp;
using Xunit;

namespace MiniGpt4.Tests.Support;

/// <summary>
/// The oracle (shared/oracle, read in place): reference.json / reference_ext.json, its .npy arrays, its
/// images and the tiny model's files and configurations. Every path goes through <see cref="Fixtures.Require"/>.
/// </summary>
public static class Oracle
{
    private static readonly Lazy<JsonNode> Ref = new(() => Fixtures.Json("oracle/tiny/reference.json"));
    private static readonly Lazy<JsonNode> Ext = new(() => Fixtures.Json("oracle/tiny/reference_ext.json"));

    /// <summary>reference.json (skips when absent).</summary>
    public static JsonNode Reference { get { Fixtures.Require("oracle/tiny/reference.json"); return Ref.Value; } }

    /// <summary>reference_ext.json (skips when absent).</summary>
    public static JsonNode Extension { get { Fixtures.Require("oracle/tiny/reference_ext.json"); return Ext.Value; } }

    /// <summary>An int array from a JSON array.</summary>
    public static int[] Ints(JsonNode? node) => node!.AsArray().Select(n => n!.GetValue<int>()).ToArray();

    /// <summary>A string array from a JSON array.</summary>
    public static string[] Strings(JsonNode? node) => node!.AsArray().Select(n => n!.GetValue<string>()).ToArray();

    /// <summary>The greedy chats of reference.json (variant, image file, run) that the oracle ran for Vicuna-0 and Llama-2.</summary>
    public static TheoryData<string, string, string> GreedyChatRuns()
    {
        var data = new TheoryData<string, string, string>();
        foreach (var v in new[] { "vicuna0", "llama2" })
            foreach (var img in new[] { "a_gradient_shapes_640x480.png", "b_tall_100x300.jpg" })
                foreach (var rp in new[] { "rp_1.0", "rp_1.05" })
                    data.Add(v, img, rp);
        return data;
    }

    /// <summary>Path of <paramref name="relative"/> under oracle/tiny/.</summary>
    public static string Tiny(string relative) => Fixtures.Require(Path.Combine("oracle/tiny", relative));

    /// <summary>Reads an oracle .npy given its path relative to oracle/ (the form reference*.json uses: <c>tiny/arrays/...</c>).</summary>
    public static NpyArray Array(string relativeToOracle) => Npy.Read(Fixtures.Require(Path.Combine("oracle", relativeToOracle)));

    /// <summary>An oracle .npy (path relative to oracle/) as a float32 CPU tensor.</summary>
    public static torch.Tensor Tensor(string relativeToOracle) => Tensors.FromNpy(Array(relativeToOracle));

    // ---- images and their preprocessing references -------------------------------------------------

    /// <summary>The gradient-and-shapes PNG, 640x480.</summary>
    public const string ImageA = "a_gradient_shapes_640x480";

    /// <summary>The tall JPEG, 100x300.</summary>
    public const string ImageB = "b_tall_100x300";

    /// <summary>The oracle's five images (stem, file extension); each has a 224 preprocessing reference.</summary>
    public static readonly (string Stem, string Ext)[] Images =
    [
        (ImageA, "png"), (ImageB, "jpg"), ("c_square_224x224", "png"), ("d_rgba_300x180", "png"), ("e_gray_50x40", "png"),
    ];

    /// <summary>Path of an oracle image, by file name (<c>b_tall_100x300.jpg</c>) or by stem (<c>b_tall_100x300</c>).</summary>
    public static string Image(string name)
    {
        if (Path.HasExtension(name)) return Fixtures.Require("oracle/images/" + name);
        return Fixtures.Require($"oracle/images/{name}.{Images.Single(x => x.Stem == name).Ext}");
    }

    /// <summary>A preprocessing reference of <paramref name="stem"/> at <paramref name="size"/> (preprocess/ for 224, preprocess_448/ for 448), e.g. kind <c>pixel_values</c>.</summary>
    public static NpyArray Preprocessed(string stem, int size, string kind)
        => Array($"{(size == 224 ? "preprocess" : "preprocess_448")}/{stem}.{kind}.npy");

    /// <summary>The reference pixel values of <paramref name="stem"/> at <paramref name="size"/> as a [1,3,S,S] float32 tensor.</summary>
    public static torch.Tensor Pixels(string stem, int size = 224) => Tensors.FromNpy(Preprocessed(stem, size, "pixel_values"));

    // ---- the tiny model's vision side ---------------------------------------------------------------

    /// <summary>The tiny EVA ViT checkpoint.</summary>
    public static string EvaVit => Tiny("eva_vit_g.pth");

    /// <summary>The ViT shape from <c>tiny/model_config.json</c> (<c>vision</c>), for <paramref name="imageSize"/>.</summary>
    internal static VisionConfig Vision(int imageSize = 224)
    {
        var root = Fixtures.Json("oracle/tiny/model_config.json");
        var v = root["vision"]!;
        var patch = root["image"]!["patch_size"]!.GetValue<int>();
        return new VisionConfig(imageSize, patch, v["width"]!.GetValue<int>(), v["depth"]!.GetValue<int>(),
            v["heads"]!.GetValue<int>(), v["mlp_hidden"]!.GetValue<int>(), v["layer_norm_eps"]!.GetValue<double>());
    }

    /// <summary>The Q-Former shape: the tiny BERT config.json plus the ViT width as encoder width.</summary>
    internal static QFormerConfig QFormer()
        => QFormerConfig.FromBertConfigJson(Tiny("bert-base-uncased/config.json"), encoderWidth: Vision().Width);

    /// <summary>
    /// The tiny EVA ViT (or the one in <paramref name="path"/>) at <paramref name="imageSize"/> pixels (or shaped by
    /// <paramref name="config"/>) in <paramref name="dtype"/>, on the CPU.
    /// </summary>
    internal static EvaVisionTransformer LoadVit(torch.ScalarType dtype = torch.ScalarType.Float32, int imageSize = 224, VisionConfig? config = null, string? path = null)
    {
        using var source = MiniGpt4.Weights.WeightFiles.Open(path ?? EvaVit);
        return EvaVisionTransformer.Load(source, config ?? Vision(imageSize), dtype, torch.CPU);
    }

    /// <summary>
    /// Encodes the reference pixels of <paramref name="image"/> at <paramref name="size"/> with <paramref name="vit"/>, checks the
    /// tokens are float32 (whatever the weights' dtype) and returns their max abs diff from the oracle array <paramref name="array"/>.
    /// </summary>
    internal static double EncodeDiff(EvaVisionTransformer vit, string array, string image = ImageA, int size = 224)
    {
        using var pixels = Pixels(image, size);
        using var actual = vit.Encode(pixels);
        Assert.Equal(torch.ScalarType.Float32, actual.dtype);
        using var expected = Tensor(array);
        return MaxAbsDiff(actual, expected);
    }

    /// <summary>Encodes <paramref name="image"/> with <paramref name="vit"/>, projects it and returns the max abs diff from the oracle array <paramref name="array"/>.</summary>
    internal static double ProjectDiff(EvaVisionTransformer vit, ProjectorModule projector, string array, string image = ImageA)
    {
        using var pixels = Pixels(image);
        using var tokens = vit.Encode(pixels);
        using var proj = projector.Project(tokens);
        using var expected = Tensor(array);
        return MaxAbsDiff(proj, expected);
    }

    // ---- comparisons --------------------------------------------------------------------------------

    /// <summary>Max |a-b|.</summary>
    public static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"length {a.Length} vs {b.Length}");
        double m = 0;
        for (var i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }

    /// <summary>Max |actual - expected| (in float64, any dtypes) after checking the shapes agree.</summary>
    public static double MaxAbsDiff(torch.Tensor actual, torch.Tensor expected)
    {
        Assert.Equal(expected.shape, actual.shape);
        using var scope = torch.NewDisposeScope();
        return (actual.to(torch.ScalarType.Float64).cpu() - expected.to(torch.ScalarType.Float64).cpu()).abs().max().item<double>();
    }
}

/// <summary>Live-tensor accounting for leak tests.</summary>
public static class LiveTensors
{
    /// <summary>
    /// <c>Tensor.TotalCount</c> after running pending finalizers, so that garbage left by earlier tests is
    /// not finalized during the measured span (which would lower the count and hide or fake a leak).
    /// </summary>
    public static long Settled()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return TorchSharp.torch.Tensor.TotalCount;
    }
}
