using MiniGpt4.Bridge;
using MiniGpt4.SyntheticWorld;
using MiniGpt4.Tests.Support;
using MiniGpt4.Training;
using MiniGpt4.Vision;
using MiniGpt4.Weights;
using Xunit;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Training;

/// <summary>
/// Vision pretraining of the toy model (a small EVA ViT and Q-Former from scratch on synthetic-world images): a short run
/// lowers the loss on held-out images, the weights it writes load through the inference library's release-layout
/// loaders and compute what the trainer computed, and the ViT's differentiable path equals its inference path.
/// </summary>
public class VisionPretrainingTests
{
    /// <summary>A very small configuration, so a run takes seconds.</summary>
    private static VisionPretrainingOptions Small(int steps) => new()
    {
        ImageSize = 56, Width = 32, Depth = 1, Heads = 2, MlpHidden = 64,
        QFormerHidden = 32, QFormerLayers = 1, QFormerHeads = 2, QFormerIntermediate = 64,
        Steps = steps, BatchSize = 8, LearningRate = 3e-3, WarmupSteps = 2, Seed = 3, Threads = 1,
    };

    [Fact]
    public void AShortRunLowersTheLossOnHeldOutImages()
    {
        using var trainer = new VisionPretrainer(Small(30));
        var before = trainer.LossOn(seed: 99, count: 16);
        trainer.Train();
        var after = trainer.LossOn(seed: 99, count: 16);
        // Untrained, every query is near the uniform guess over the 45 code words (ln 45 = 3.81) and every patch near
        // the uniform guess over its 19 classes (18 colour-and-shape combinations and background, ln 19 = 2.94) and
        // over centre or not (ln 2).
        var uniform = Math.Log(SceneCode.Vocabulary.Count) + Small(30).PatchLossWeight * (Math.Log(SceneCode.ComboCount + 1) + Math.Log(2));
        Assert.InRange(before, uniform - 0.4, uniform + 0.4);
        Assert.True(after < before - 0.5, $"loss {before:F3} -> {after:F3}");
        var eval = trainer.Evaluate(seed: 99, count: 16);
        Assert.Equal(SceneCode.Length, eval.PerPosition.Count);
        Assert.All(eval.PerPosition, a => Assert.InRange(a, 0, 1));
        Assert.InRange(eval.ObjectPatches, 0, 1);
    }

    [Fact]
    public void SavedWeightsLoadThroughTheReleaseLoadersAndComputeTheSameQueries()
    {
        using var dir = new TempDir();
        var options = Small(3);
        using var trainer = new VisionPretrainer(options);
        trainer.Train();
        var sections = trainer.Save(dir.Path);
        Assert.Equal(VisionPretrainer.VisionFileName, (string?)sections["vision"]!["checkpoint"]);
        var (expected, words) = trainer.QueryFeatures(seed: 5, count: 2);
        using var _ = expected;
        Assert.Equal(SceneCode.Words(SceneGenerator.Generate(5, 1)), words.Skip(SceneCode.Length));

        // The stage-2 checkpoint holds llama_proj only; any shape [out, hidden] serves.
        var projection = dir.File("llama_proj.pth");
        using (var w = zeros(4, options.QFormerHidden))
        using (var b = zeros(4))
            TorchCheckpointWriter.Write(projection, [new("llama_proj.weight", w), new("llama_proj.bias", b)], underModelKey: true);
        var vconfig = new VisionConfig(options.ImageSize, options.PatchSize, options.Width, options.Depth, options.Heads, options.MlpHidden);
        var qconfig = QFormerConfig.FromBertConfigJson(dir.File(VisionPretrainer.QFormerConfigFileName), SceneCode.Length, encoderWidth: options.Width);
        using var visionFile = WeightFiles.Open(dir.File(VisionPretrainer.VisionFileName));
        using var qformerFile = WeightFiles.Open(dir.File(VisionPretrainer.QFormerFileName));
        using var projectionFile = WeightFiles.Open(projection);
        using var vit = EvaVisionTransformer.Load(visionFile, vconfig, ScalarType.Float32, CPU);
        using var qformer = QFormerProjector.Load(qformerFile, projectionFile, qconfig, ScalarType.Float32, CPU);

        var scenes = new[] { SceneGenerator.Generate(5, 0), SceneGenerator.Generate(5, 1) };
        var pixels = scenes.SelectMany(s => WorldImagesFor(s, options.ImageSize)).ToArray();
        using var x = tensor(pixels, [2, 3, options.ImageSize, options.ImageSize]);
        using var noGrad = no_grad();
        using var tokens = vit.Encode(x);
        using var actual = qformer.ProjectionInput(tokens).reshape(2 * SceneCode.Length, -1);
        Assert.True(actual.allclose(expected, rtol: 1e-5, atol: 1e-5), "the loaded modules compute other query outputs than the trainer's");
    }

    [Fact]
    public void TheVisionTowersDifferentiablePathEqualsItsInferencePath()
    {
        using var dir = new TempDir();
        var options = Small(2);
        using (var trainer = new VisionPretrainer(options))
        {
            trainer.Train();
            trainer.Save(dir.File("m"));
        }
        var vconfig = new VisionConfig(options.ImageSize, options.PatchSize, options.Width, options.Depth, options.Heads, options.MlpHidden);
        using var file = WeightFiles.Open(Path.Combine(dir.File("m"), VisionPretrainer.VisionFileName));
        using var vit = EvaVisionTransformer.Load(file, vconfig, ScalarType.Float32, CPU);
        var pixels = WorldImagesFor(SceneGenerator.Generate(8, 0), options.ImageSize);
        using var x = tensor(pixels, [1, 3, options.ImageSize, options.ImageSize]);
        using var inference = vit.Encode(x);
        foreach (var p in vit.parameters()) p.requires_grad = true;
        using var trained = vit.call(x);
        Assert.True(trained.requires_grad);
        Assert.True(trained.detach().allclose(inference, rtol: 0, atol: 0), "forward and Encode differ");
        using var sum = trained.sum();
        sum.backward();
        Assert.All(vit.parameters(), p => Assert.NotNull(p.grad));
    }

    private static float[] WorldImagesFor(Scene scene, int size)
    {
        using var encoded = new MemoryStream();
        SceneRenderer.Encode(scene, encoded); // the file a user would have, decoded by the inference preprocessing
        return MiniGpt4.Imaging.ImagePreprocessor.ToPixelValues(ImageInput.FromBytes(encoded.ToArray()), size, new ImageDecodingOptions());
    }
}
