using MiniGpt4.Bridge;
using MiniGpt4.Tests.Support;
using MiniGpt4.Vision;
using MiniGpt4.Weights;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Vision;

/// <summary>
/// Checkpoints written here (safetensors, through the weights layer's writer) from the oracle's files:
/// float16 storage like the released weights, an extra trailing block, and a tensor of the wrong shape.
/// </summary>
public class WrittenCheckpointTests(ITestOutputHelper output)
{
    private const string Img = Oracle.ImageA;

    private const string VitOut = $"tiny/arrays/vicuna0/encode/{Img}.vit_out.npy";

    private static double VitDiff(string path, VisionConfig cfg)
    {
        using var vit = Oracle.LoadVit(config: cfg, path: path);
        return Oracle.EncodeDiff(vit, VitOut, Img);
    }

    [SkippableFact]
    public void Float16_checkpoints_load_into_a_float32_model()
    {
        // The oracle's weights are fp16-exact, so an fp16 copy must give the reference numbers.
        using var dir = new TempDir();
        var eva = dir.File("eva_vit_g.fp16.safetensors");
        using (var src = WeightFiles.Open(Oracle.EvaVit)) SafetensorsWriter.Write(eva, src, ScalarType.Float16);
        var blip2 = dir.File("blip2.fp16.safetensors");
        using (var src = WeightFiles.Open(Oracle.Tiny("blip2_pretrained_flant5xxl.pth"))) SafetensorsWriter.Write(blip2, src, ScalarType.Float16);
        using (var f = WeightFiles.Open(eva))
        {
            Assert.True(f.TryGetInfo("blocks.0.attn.qkv.weight", out var info));
            Assert.Equal(ScalarType.Float16, info.DType);
        }

        var diff = VitDiff(eva, Oracle.Vision());
        output.WriteLine($"vit_out from an fp16 checkpoint: max abs diff {diff:E2}");
        Assert.True(diff <= 1e-4);

        using var vit = Oracle.LoadVit(path: eva);
        using var projector = Bridge.ProjectorTests.LoadQFormer(blip2, Oracle.Tiny("pretrained_minigpt4.pth"));
        var pdiff = Oracle.ProjectDiff(vit, projector, $"tiny/arrays/vicuna0/encode/{Img}.proj_out.npy", Img);
        output.WriteLine($"proj_out from fp16 checkpoints: max abs diff {pdiff:E2}");
        Assert.True(pdiff <= 1e-4);
    }

    [SkippableFact]
    public void A_file_with_an_extra_random_block_gives_the_same_outputs()
    {
        var cfg = Oracle.Vision();
        using var dir = new TempDir();
        var path = dir.File("eva_vit_g.extra.safetensors");
        using (var src = WeightFiles.Open(Oracle.EvaVit))
        {
            var tensors = new List<KeyValuePair<string, Tensor>>();
            foreach (var k in src.Keys) tensors.Add(new(k, src.Load(k)));
            foreach (var (k, t) in tensors.Where(kv => kv.Key.StartsWith("blocks.0.", StringComparison.Ordinal)).ToList())
                tensors.Add(new($"blocks.{cfg.Depth}." + k["blocks.0.".Length..], randn(t.shape) * 3));
            SafetensorsWriter.Write(path, tensors);
            foreach (var kv in tensors) kv.Value.Dispose();
        }
        var diff = VitDiff(path, cfg);
        output.WriteLine($"vit_out from a file with {cfg.Depth + 1} blocks: max abs diff {diff:E2}");
        Assert.True(diff <= 1e-4);
    }

    [SkippableFact]
    public void A_tensor_of_the_wrong_shape_in_the_file_is_named()
    {
        using var dir = new TempDir();
        var path = dir.File("eva_vit_g.bad.safetensors");
        using (var src = WeightFiles.Open(Oracle.EvaVit))
        {
            var tensors = src.Keys.Select(k => new KeyValuePair<string, Tensor>(k,
                k == "blocks.1.attn.v_bias" ? zeros(Oracle.Vision().Width - 1) : src.Load(k))).ToList();
            SafetensorsWriter.Write(path, tensors);
            foreach (var kv in tensors) kv.Value.Dispose();
        }
        var ex = Assert.Throws<MiniGptWeightsException>(() => Oracle.LoadVit(path: path));
        output.WriteLine(ex.Message);
        Assert.Equal("blocks.1.attn.v_bias", ex.Key);
        Assert.Contains("blocks.1.attn.v_bias", ex.Message);
    }
}
