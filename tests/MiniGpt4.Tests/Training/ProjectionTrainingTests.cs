using System.Text.Json;
using MiniGpt4.Abstractions;
using MiniGpt4.Models;
using MiniGpt4.Prompting;
using MiniGpt4.Runtime;
using MiniGpt4.Tests.Pipeline;
using MiniGpt4.Tests.Support;
using MiniGpt4.Training;
using MiniGpt4.Weights;
using Xunit;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Training;

/// <summary>
/// Projection-only training on the oracle's tiny model (both towers frozen): the loss's gradient against finite
/// differences in float64, the loss going down, the written checkpoint loading through the public loader and changing
/// the answer, a resumed run equal to an uninterrupted one, the stage-2 prompt equal to the engine's, and no leaks.
/// </summary>
public class ProjectionTrainingTests
{
    private static string Manifest(string variant) => Oracle.Tiny($"minigpt4-{variant}.json");

    private static readonly string[] Captions =
    [
        "a gradient with a red circle and a blue square",
        "a tall photograph of a street",
        "a square picture with stripes",
        "a wide picture with a transparent corner",
        "a small grey picture",
    ];

    /// <summary>Writes a JSONL file of the stage's form for the oracle's five images and reads it back.</summary>
    private static IReadOnlyList<TrainingExample> Data(TempDir dir, TrainingStage stage)
    {
        var lines = Oracle.Images.Select((img, i) =>
        {
            var path = Oracle.Image(img.Stem);
            object line = stage == TrainingStage.Stage1
                ? new { image = path, text = Captions[i] }
                : new
                {
                    image = path,
                    conversation = i % 2 == 0
                        ? new object[] { new { role = "user", text = "Describe this image." }, new { role = "assistant", text = Captions[i] + "." } }
                        : new object[]
                        {
                            new { role = "user", text = "What is it?" }, new { role = "assistant", text = "A picture." },
                            new { role = "user", text = "Describe this image." }, new { role = "assistant", text = Captions[i] + "." },
                        },
                };
            return JsonSerializer.Serialize(line);
        });
        var file = dir.File($"stage{(int)stage}.jsonl");
        File.WriteAllLines(file, lines);
        return TrainingData.ReadJsonl(file, stage);
    }

    private static double LossValue(ProjectionTrainer trainer, IReadOnlyList<ExampleSequence> seqs, IReadOnlyList<string> images)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        return trainer.Loss(seqs, images).ToDouble();
    }

    [SkippableTheory]
    [InlineData("vicuna0", TrainingStage.Stage2)]
    [InlineData("llama2", TrainingStage.Stage1)]
    public void The_gradient_of_the_loss_matches_finite_differences_in_float64(string variant, TrainingStage stage)
    {
        using var dir = new TempDir();
        var data = Data(dir, stage);
        using var trainer = ProjectionTrainer.Load(Manifest(variant), new ProjectionTrainingOptions { Stage = stage }, ScalarType.Float64);
        trainer.EncodeImages(data, CancellationToken.None);
        trainer.ResetParameters();
        var seqs = data.Select(trainer.Layout.Build).ToArray();
        var images = data.Select(e => e.ImagePath).ToArray();

        double[] gw, gb;
        using (var scope = NewDisposeScope())
        {
            trainer.Loss(seqs, images).backward();
            using var wg = trainer.Weight!.grad!;
            using var bg = trainer.Bias!.grad!;
            gw = wg.data<double>().ToArray();
            gb = bg.data<double>().ToArray();
        }
        Assert.Contains(gw, g => g != 0);
        Assert.Contains(gb, g => g != 0);

        const double h = 1e-5;
        double Central(Action<double> perturb)
        {
            perturb(h);
            var plus = LossValue(trainer, seqs, images);
            perturb(-2 * h);
            var minus = LossValue(trainer, seqs, images);
            perturb(h);
            return (plus - minus) / (2 * h);
        }

        // Single entries of the weight and the bias.
        var rng = new Random(7);
        var (rows, cols) = ((int)trainer.Weight!.shape[0], (int)trainer.Weight.shape[1]);
        for (var n = 0; n < 6; n++)
        {
            var (r, c) = (rng.Next(rows), rng.Next(cols));
            var fd = Central(d => Nudge(trainer.Weight, d, r, c));
            Assert.True(Math.Abs(fd - gw[r * cols + c]) <= 1e-7 + 1e-6 * Math.Abs(fd), $"weight[{r},{c}]: finite difference {fd}, gradient {gw[r * cols + c]}");
            var b = rng.Next(rows);
            fd = Central(d => Nudge(trainer.Bias!, d, b));
            Assert.True(Math.Abs(fd - gb[b]) <= 1e-7 + 1e-6 * Math.Abs(fd), $"bias[{b}]: finite difference {fd}, gradient {gb[b]}");
        }

        // Every entry at once: the derivative along a random direction is the gradient's dot product with it.
        var dw = Enumerable.Range(0, gw.Length).Select(_ => rng.NextDouble() - 0.5).ToArray();
        var db = Enumerable.Range(0, gb.Length).Select(_ => rng.NextDouble() - 0.5).ToArray();
        using var dwT = tensor(dw, trainer.Weight.shape);
        using var dbT = tensor(db, trainer.Bias!.shape);
        var along = Central(d =>
        {
            using var noGrad = no_grad();
            using Scalar s = d;
            trainer.Weight.add_(dwT, s);
            trainer.Bias.add_(dbT, s);
        });
        var dot = gw.Zip(dw, (g, x) => g * x).Sum() + gb.Zip(db, (g, x) => g * x).Sum();
        Assert.True(Math.Abs(along - dot) <= 1e-6 * Math.Max(1, Math.Abs(dot)), $"directional derivative {along}, gradient {dot}");
    }

    private static void Nudge(Tensor t, double delta, params long[] index)
    {
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var flat = t.view(-1);
        var at = index.Length == 1 ? index[0] : index[0] * t.shape[1] + index[1];
        using Scalar d = delta;
        flat[at].add_(d);
    }

    [SkippableFact]
    public async Task A_few_steps_lower_the_loss_on_a_fixed_batch_and_the_checkpoint_loads_and_changes_the_answer()
    {
        using var dir = new TempDir();
        var data = Data(dir, TrainingStage.Stage2).Take(4).ToArray();
        var options = new ProjectionTrainingOptions { Stage = TrainingStage.Stage2, Steps = 8, BatchSize = 4, LearningRate = 2e-2, WarmupSteps = 0, Seed = 3 };
        using var trainer = await ProjectionTrainer.LoadAsync(Manifest("vicuna0"), options);
        var reports = new List<TrainingProgress>();
        var outDir = Path.Combine(dir.Path, "out");
        var result = await trainer.TrainAsync(data, outDir, progress: new SyncReports(reports.Add));

        // Every step sees the same four examples (one batch = the whole set): the loss is that of one fixed batch.
        Assert.Equal(Enumerable.Range(1, 8), reports.Select(r => r.Step));
        Assert.All(reports, r => Assert.True(r.StepsPerSecond > 0 && r.EstimatedRemaining >= TimeSpan.Zero));
        var seqs = data.Select(trainer.Layout.Build).ToArray();
        var after = LossValue(trainer, seqs, data.Select(e => e.ImagePath).ToArray());
        Assert.True(after < reports[0].Loss * 0.8, $"loss {reports[0].Loss} before, {after} after 8 steps");
        Assert.True(reports[^1].Loss < reports[0].Loss);
        Assert.Equal(8, result.Steps);

        // The checkpoint holds exactly the release layout's two tensors, equal to the trained ones.
        using (var file = WeightFiles.Open(result.CheckpointPath))
        {
            Assert.Equal(new[] { "llama_proj.bias", "llama_proj.weight" }, file.Keys.Order(StringComparer.Ordinal));
            using var w = file.Load("llama_proj.weight");
            using var trained = trainer.Weight!.detach();
            Assert.Equal(0, Oracle.MaxAbsDiff(w, trained));
        }

        // The public loader reads it unchanged (through the written manifest) and the answer follows the new projection.
        var ask = new GenerationOptions { Temperature = 0, MaxNewTokens = 12 };
        var image = ImageInput.FromFile(data[0].ImagePath);
        string before, trainedAnswer;
        using (var original = await MiniGptPipeline.LoadAsync(Manifest("vicuna0"), TinyPipelines.Float32Exact))
            before = (await original.AskAsync(image, "Describe this image.", ask)).Text;
        using (var retrained = await MiniGptPipeline.LoadAsync(result.ManifestPath, TinyPipelines.Float32Exact))
            trainedAnswer = (await retrained.AskAsync(image, "Describe this image.", ask)).Text;
        Assert.NotEqual(before, trainedAnswer);
    }

    [SkippableFact]
    public async Task A_resumed_run_continues_exactly_as_an_uninterrupted_one()
    {
        using var dir = new TempDir();
        var data = Data(dir, TrainingStage.Stage1);
        var options = new ProjectionTrainingOptions { Steps = 6, BatchSize = 2, CheckpointEvery = 2, LearningRate = 1e-2, WarmupSteps = 2, Seed = 11 };
        using var trainer = await ProjectionTrainer.LoadAsync(Manifest("vicuna0"), options);
        var processWide = TorchThreads.ProcessWide();
        PoolThreads.SetTorchThreads(processWide, processWide);

        var whole = new List<TrainingProgress>();
        var a = Path.Combine(dir.Path, "a");
        await trainer.TrainAsync(data, a, progress: new SyncReports(whole.Add));

        // Interrupted after step 3 (the last save was at step 2), then resumed.
        var b = Path.Combine(dir.Path, "b");
        using var cts = new CancellationTokenSource();
        var first = new List<TrainingProgress>();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => trainer.TrainAsync(data, b, progress: new SyncReports(p =>
        {
            first.Add(p);
            if (p.Step == 3) cts.Cancel();
        }), cancellationToken: cts.Token));
        Assert.Equal(3, first.Count);
        // The resumed run may land on a pool thread whose libtorch thread count other work changed (its sums would round
        // differently): the run keeps the process-wide count.
        var resumed = new List<TrainingProgress>();
        PoolThreads.SetTorchThreads(processWide == 1 ? 2 : 1, processWide);
        try
        {
            await trainer.TrainAsync(data, b, resume: true, progress: new SyncReports(resumed.Add));
        }
        finally { PoolThreads.SetTorchThreads(processWide, processWide); }

        Assert.Equal(new[] { 3, 4, 5, 6 }, resumed.Select(p => p.Step));
        Assert.Equal(whole.Skip(2).Select(p => p.Loss), resumed.Select(p => p.Loss));
        Assert.Equal(whole.Select(p => p.LearningRate), first.Take(2).Concat(resumed).Select(p => p.LearningRate));
        using var sa = WeightFiles.Open(Path.Combine(a, ProjectionTrainer.StateFileName));
        using var sb = WeightFiles.Open(Path.Combine(b, ProjectionTrainer.StateFileName));
        Assert.Equal(6, sa.Keys.Count);
        foreach (var key in sa.Keys)
        {
            using var ta = sa.Load(key);
            using var tb = sb.Load(key);
            Assert.Equal(0, Oracle.MaxAbsDiff(ta, tb));
        }
        Assert.Equal(await File.ReadAllBytesAsync(Path.Combine(a, ProjectionTrainer.CheckpointFileName)),
            await File.ReadAllBytesAsync(Path.Combine(b, ProjectionTrainer.CheckpointFileName)));

        // A run with other options does not resume that state.
        using var other = await ProjectionTrainer.LoadAsync(Manifest("vicuna0"), options with { Seed = 12 });
        await Assert.ThrowsAsync<MiniGptConfigurationException>(() => other.TrainAsync(data, b, resume: true));
    }

    [SkippableFact]
    public async Task Training_runs_leave_no_live_tensors()
    {
        using var dir = new TempDir();
        var data = Data(dir, TrainingStage.Stage2);
        var options = new ProjectionTrainingOptions { Stage = TrainingStage.Stage2, Steps = 3, BatchSize = 3, CheckpointEvery = 2 };
        using var trainer = await ProjectionTrainer.LoadAsync(Manifest("vicuna0"), options);
        await trainer.TrainAsync(data, Path.Combine(dir.Path, "warm")); // encodes and caches the images
        var before = LiveTensors.Settled();
        await trainer.TrainAsync(data, Path.Combine(dir.Path, "measured"));
        await trainer.TrainAsync(data, Path.Combine(dir.Path, "measured"), resume: true);
        Assert.Equal(before, LiveTensors.Settled());
    }

    [SkippableFact]
    public async Task The_stage2_prompt_is_the_engines_prompt_and_only_answers_are_targets()
    {
        using var dir = new TempDir();
        var data = Data(dir, TrainingStage.Stage2);
        using var pipeline = await MiniGptPipeline.LoadAsync(Manifest("vicuna0"), TinyPipelines.Float32Exact);
        var layout = new ExampleLayout(ModelPreset.Vicuna0, pipeline.LanguageModel, TrainingStage.Stage2, 160);
        var lm = pipeline.LanguageModel;
        foreach (var example in data)
        {
            var seq = layout.Build(example);
            // The first question exactly as the engine renders, splits and tokenizes it.
            var conversation = new Conversation();
            conversation.AddImage();
            conversation.Ask(example.Conversation![0].Text);
            using var img = ImageEmbeddings.FromArray(new float[32 * 64], 32, 64);
            var turn = pipeline.Prompts.Build(conversation, [img], new GenerationOptions());
            Assert.Equal(turn.SegmentIds[0], seq.BeforeImage);
            Assert.Equal(turn.SegmentIds[1], seq.AfterImage[0].Ids);
            Assert.Equal(lm.BeginningOfSequenceId, seq.BeforeImage[0]);
            Assert.False(seq.AfterImage[0].IsTarget);

            // Targets: each answer with "###" tokenized on its own; the later question is context.
            var answers = example.Conversation.Where(m => !m.IsUser).ToArray();
            var targets = seq.AfterImage.Where(r => r.IsTarget).ToArray();
            Assert.Equal(answers.Select(a => lm.Tokenize(a.Text + "###", addBos: false)), targets.Select(t => t.Ids));
            if (answers.Length == 2)
                Assert.Equal(lm.Tokenize("Human: Describe this image.###Assistant: ", addBos: false), seq.AfterImage[2].Ids);
        }

        // Stage 1: BOS, the image, the caption and "\n" (no prompt text).
        var stage1 = new ExampleLayout(ModelPreset.Vicuna0, lm, TrainingStage.Stage1, 32).Build(new TrainingExample(data[0].ImagePath, "a caption"));
        Assert.Equal(new[] { lm.BeginningOfSequenceId }, stage1.BeforeImage);
        Assert.Equal(lm.Tokenize("a caption\n", addBos: false), Assert.Single(stage1.AfterImage).Ids);
    }

    [SkippableFact]
    public void Bad_training_data_is_refused_naming_the_line()
    {
        using var dir = new TempDir();
        var file = dir.File("bad.jsonl");
        File.WriteAllLines(file,
        [
            JsonSerializer.Serialize(new { image = Oracle.Image(Oracle.ImageA), text = "fine" }),
            JsonSerializer.Serialize(new { image = Oracle.Image(Oracle.ImageA), conversation = new[] { new { role = "assistant", text = "no question" } } }),
        ]);
        Assert.Contains("bad.jsonl:2: 'text'", Assert.Throws<MiniGptConfigurationException>(() => TrainingData.ReadJsonl(file, TrainingStage.Stage1)).Message);
        Assert.Contains("bad.jsonl:1: a stage-2 line", Assert.Throws<MiniGptConfigurationException>(() => TrainingData.ReadJsonl(file, TrainingStage.Stage2)).Message);
        File.WriteAllText(file, JsonSerializer.Serialize(new { image = "missing.png", text = "x" }));
        Assert.Contains("does not exist", Assert.Throws<MiniGptConfigurationException>(() => TrainingData.ReadJsonl(file, TrainingStage.Stage1)).Message);
    }

    [SkippableFact]
    public void Conversations_read_in_either_spelling_give_the_same_examples()
    {
        using var dir = new TempDir();
        var image = Oracle.Image(Oracle.ImageA);
        var plain = dir.File("plain.jsonl");
        var llava = dir.File("llava.jsonl");
        File.WriteAllText(plain, JsonSerializer.Serialize(new { image, conversation = new[]
        {
            new { role = "user", text = "How many shapes are there?" }, new { role = "assistant", text = "There are two shapes." },
        } }));
        File.WriteAllText(llava, JsonSerializer.Serialize(new { image, conversation = new[]
        {
            new { from = "human", value = "How many shapes are there?" }, new { from = "gpt", value = "There are two shapes." },
        } }));
        var a = Assert.Single(TrainingData.ReadJsonl(plain, TrainingStage.Stage2));
        var b = Assert.Single(TrainingData.ReadJsonl(llava, TrainingStage.Stage2));
        Assert.Equal(a.ImagePath, b.ImagePath);
        Assert.Equal(a.Conversation!, b.Conversation!);
        File.WriteAllText(llava, JsonSerializer.Serialize(new { image, conversation = new[] { new { from = "system", value = "x" } } }));
        Assert.Contains("neither 'human' nor 'gpt'", Assert.Throws<MiniGptConfigurationException>(() => TrainingData.ReadJsonl(llava, TrainingStage.Stage2)).Message);
    }

    [Fact]
    public void The_inference_library_does_not_reference_the_training_assembly()
    {
        Assert.DoesNotContain(typeof(MiniGptPipeline).Assembly.GetReferencedAssemblies(), a => a.Name == "MiniGpt4.Training");
        Assert.Contains(typeof(ProjectionTrainer).Assembly.GetReferencedAssemblies(), a => a.Name == "MiniGpt4");
    }

    /// <summary>Reports on the training thread (<see cref="Progress{T}"/> would post them later).</summary>
    private sealed class SyncReports(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
