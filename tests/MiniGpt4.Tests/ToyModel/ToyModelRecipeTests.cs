using MiniGpt4.Abstractions;
using MiniGpt4.SyntheticWorld;
using MiniGpt4.Tests.Support;
using MiniGpt4.Training;
using Xunit;

namespace MiniGpt4.Tests.ToyModel;

/// <summary>
/// The toy model's whole recipe in miniature (docs/toy-model.md), as CI can afford it: a language model and a vision
/// tower pretrained for a few steps, assembled into a minigpt4-vicuna0 folder, then stage 1 and stage 2 on the
/// projection: the stage losses go down on a fixed batch and the folder loads and answers through the pipeline.
/// </summary>
public class ToyModelRecipeTests
{
    private sealed class Progress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }

    [Fact]
    public async Task A_short_run_of_the_recipe_lowers_the_stage_losses_and_writes_a_model_that_answers()
    {
        using var dir = new TempDir();
        var llm = Path.Combine(dir.Path, "llm");
        await LanguagePretrainer.TrainAsync(llm, new LanguagePretrainingOptions
        {
            Steps = 8, BatchSize = 4, HiddenSize = 32, IntermediateSize = 64, Layers = 1, Heads = 2, WarmupSteps = 2, Threads = 1,
        });
        using var vision = new VisionPretrainer(new VisionPretrainingOptions
        {
            ImageSize = 56, Width = 32, Depth = 1, Heads = 2, MlpHidden = 64, QFormerHidden = 32, QFormerLayers = 1, QFormerHeads = 2,
            QFormerIntermediate = 64, Steps = 4, BatchSize = 4, WarmupSteps = 1, Threads = 1,
        });
        vision.Train();
        var manifest = ToyModelBuilder.Assemble(vision, llm, Path.Combine(dir.Path, "model"), fitImages: 16);

        foreach (var stage in new[] { 1, 2 })
        {
            // Eight images, a batch of eight: every step sees the same batch, so the loss must fall.
            var losses = new List<double>();
            var options = new ProjectionTrainingOptions { Steps = 6, BatchSize = 8, LearningRate = 1e-2, Threads = 1, CheckpointEvery = 6 };
            var result = await ToyModelBuilder.TrainProjectionAsync(manifest, stage, images: 8, seed: 5, options, Path.Combine(dir.Path, "work"),
                new Progress<TrainingProgress>(p => losses.Add(p.Loss)));
            Assert.Equal(6, result.Steps);
            Assert.True(losses[^1] < losses[0], $"stage {stage} losses {string.Join(", ", losses)}");
        }

        using var pipeline = await MiniGptPipeline.LoadAsync(manifest, new MiniGptLoadOptions { DType = MiniGptDType.Float32 });
        var scene = SceneGenerator.Generate(424242, 0);
        var answer = await pipeline.AskAsync(ImageInput.FromRgb(scene.Width, scene.Height, SceneRenderer.Render(scene)),
            QuestionGenerator.CountQuestion, new GenerationOptions { Temperature = 0, MaxNewTokens = 8 });
        Assert.Equal(ModelVariant.MiniGpt4Vicuna0, pipeline.Variant);
        Assert.NotNull(answer.Text);
    }
}
