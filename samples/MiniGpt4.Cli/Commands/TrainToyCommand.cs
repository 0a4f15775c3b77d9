using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using MiniGpt4.Cli.Options;
using MiniGpt4.Training;

namespace MiniGpt4.Cli.Commands;

/// <summary>
/// <c>train-toy</c>: the toy model from scratch (docs/toy-model.md): vision pretraining of a small EVA-style tower and
/// Q-Former on synthetic-world images (<see cref="VisionPretrainer"/>), assembly with a pretrained language model into
/// a <c>minigpt4-vicuna0</c> folder (<see cref="ToyModelBuilder"/>), then stage 1 and stage 2 on the projection with
/// both towers frozen. Progress on stderr, the model's manifest path on stdout.
/// </summary>
internal sealed class TrainToyCommand : Command
{
    private readonly Option<string?> _out = CliOption.Text("--out", "The model folder to write (minigpt4.json and its files)", "DIR", required: true);
    private readonly Option<string?> _llm = CliOption.Text("--llm", "A pretrained toy language model folder (config.json, tokenizer.model, weights)", "DIR", required: true);
    private readonly Option<string?> _work = CliOption.Text("--work", "Folder for the world data and the stage runs [default: DIR/../<name>-work]", "DIR");
    private readonly Option<int?> _visionSteps = CliOption.Int("--vision-steps", "Vision pretraining steps [default: the toy model's, 6000]");
    private readonly Option<int?> _visionBatch = CliOption.Int("--vision-batch", "Images per vision pretraining step [default: 32]");
    private readonly Option<int?> _imageSize = CliOption.Int("--image-size", "Vision input size in pixels [default: the toy model's]");
    private readonly Option<int?> _patchSize = CliOption.Int("--patch-size", "Vision patch size [default: the toy model's]");
    private readonly Option<int?> _visionWidth = CliOption.Int("--vision-width", "ViT width [default: the toy model's]");
    private readonly Option<int?> _visionDepth = CliOption.Int("--vision-depth", "ViT blocks [default: the toy model's]");
    private readonly Option<float?> _visionLr = CliOption.Number("--vision-lr", "Vision pretraining peak learning rate [default: the toy model's]");
    private readonly Option<int?> _stage1Steps = CliOption.Int("--stage1-steps", $"Stage-1 projection steps [default: {ToyModelBuilder.Stage1Steps}]");
    private readonly Option<int?> _stage2Steps = CliOption.Int("--stage2-steps", $"Stage-2 projection steps [default: {ToyModelBuilder.Stage2Steps}]");
    private readonly Option<int?> _images = CliOption.Int("--images", $"World images per projection stage [default: {ToyModelBuilder.ImagesPerStage}]");
    private readonly Option<int?> _threads = CliOption.Int("--threads", "libtorch intra-op threads [default: 1; more threads are slower on a busy 2-core machine]");

    public TrainToyCommand() : base("train-toy",
        "Train the toy model from scratch: vision tower and Q-Former on the synthetic world, assembly with a pretrained toy " +
        "language model, then stage 1 and stage 2 on the projection (docs/toy-model.md). Prints the model's manifest path.")
    {
        foreach (var o in new Option[] { _out, _llm, _work, _visionSteps, _visionBatch, _imageSize, _patchSize, _visionWidth, _visionDepth, _visionLr, _stage1Steps, _stage2Steps, _images, _threads }) Options.Add(o);
        CliOption.Range(_visionSteps, 1, 10_000_000);
        CliOption.Range(_visionBatch, 1, 4096);
        CliOption.Range(_imageSize, 1, 4096);
        CliOption.Range(_patchSize, 1, 4096);
        CliOption.Range(_visionWidth, 1, 65536);
        CliOption.Range(_visionDepth, 1, 1024);
        CliOption.Positive(_visionLr);
        CliOption.Range(_stage1Steps, 1, 10_000_000);
        CliOption.Range(_stage2Steps, 1, 10_000_000);
        CliOption.Range(_images, 1, 10_000_000);
        CliOption.Range(_threads, 1, 1024);
        SetAction(Run);
    }

    private async Task<int> Run(ParseResult r, CancellationToken ct)
    {
        var folder = Path.GetFullPath(r.GetValue(_out)!);
        var work = r.GetValue(_work) ?? folder.TrimEnd(Path.DirectorySeparatorChar) + "-work";
        var threads = r.GetValue(_threads) ?? 1;
        var clock = Stopwatch.StartNew();
        var defaults = new VisionPretrainingOptions();
        var width = r.GetValue(_visionWidth) ?? defaults.Width;
        var visionOptions = defaults with
        {
            Steps = r.GetValue(_visionSteps) ?? defaults.Steps, BatchSize = r.GetValue(_visionBatch) ?? defaults.BatchSize, Threads = threads,
            ImageSize = r.GetValue(_imageSize) ?? defaults.ImageSize, PatchSize = r.GetValue(_patchSize) ?? defaults.PatchSize,
            Depth = r.GetValue(_visionDepth) ?? defaults.Depth, LearningRate = r.GetValue(_visionLr) is float lr ? lr : defaults.LearningRate,
            Width = width, MlpHidden = 3 * width, QFormerHidden = width, QFormerIntermediate = 3 * width, QFormerHeads = Math.Max(1, width / 16), Heads = Math.Max(1, width / 16),
        };
        using var vision = new VisionPretrainer(visionOptions);
        var every = Math.Max(1, visionOptions.Steps / 50);
        vision.Train(new Reports<VisionPretrainingProgress>(p =>
        {
            if (p.Step % every == 0 || p.Step == p.TotalSteps)
                Log($"[vision] step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  {p.StepsPerSecond:F2} steps/s  eta {p.Remaining:hh\\:mm\\:ss}");
        }), ct);
        var eval = vision.Evaluate(ToyModelBuilder.VisionEvalSeed, 256, ct);
        Log($"[vision] held-out seed {ToyModelBuilder.VisionEvalSeed}: whole code {eval.AllCorrect:P1}; object patches {eval.ObjectPatches:P1}; positions 0-19: " +
            string.Join(" ", eval.PerPosition.Take(20).Select(a => a.ToString("P0", CultureInfo.InvariantCulture))));
        var manifest = ToyModelBuilder.Assemble(vision, r.GetValue(_llm)!, folder);
        Log($"[assemble] {manifest} ({clock.Elapsed:mm\\:ss})");
        var images = r.GetValue(_images) ?? ToyModelBuilder.ImagesPerStage;
        foreach (var (stage, steps, seed) in new[] { (1, r.GetValue(_stage1Steps) ?? ToyModelBuilder.Stage1Steps, ToyModelBuilder.Stage1Seed), (2, r.GetValue(_stage2Steps) ?? ToyModelBuilder.Stage2Steps, ToyModelBuilder.Stage2Seed) })
        {
            var options = new ProjectionTrainingOptions { Steps = steps, BatchSize = 8, Threads = threads, CheckpointEvery = steps, LearningRate = stage == 1 ? 1e-3 : 3e-4 };
            var stageEvery = Math.Max(1, steps / 20);
            var result = await ToyModelBuilder.TrainProjectionAsync(manifest, stage, images, seed, options, work, new Reports<TrainingProgress>(p =>
            {
                if (p.Step % stageEvery == 0 || p.Step == p.TotalSteps)
                    Log($"[stage {stage}] step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  {p.StepsPerSecond:F2} steps/s");
            }), ct);
            Log($"[stage {stage}] final loss {result.FinalLoss:F4} ({clock.Elapsed:mm\\:ss})");
        }
        Console.WriteLine(manifest);
        return ExitCodes.Ok;
    }

    private static void Log(string line) => Console.Error.WriteLine(line);

    /// <summary>Reports on the training thread, in step order.</summary>
    private sealed class Reports<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
