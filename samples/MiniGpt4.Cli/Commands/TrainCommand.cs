using System.CommandLine;
using System.Globalization;
using MiniGpt4.Cli.Options;
using MiniGpt4.Training;

namespace MiniGpt4.Cli.Commands;

/// <summary>
/// <c>train</c>: MiniGPT-4's stage 1 or stage 2 on the projection (<see cref="ProjectionTrainer"/>, docs/training.md):
/// progress on stderr, the trained model's manifest path on stdout, Ctrl+C stops between steps (exit 130; the folder
/// keeps the last saved state for <c>--resume</c>).
/// </summary>
internal sealed class TrainCommand : Command
{
    private readonly Option<string?> _model = CliOption.Text("--model", "minigpt4.json of the model whose projection is trained", "PATH", required: true);
    private readonly Option<string?> _data = CliOption.Text("--data",
        "JSON lines: {\"image\": path, \"text\": caption} (stage 1) or {\"image\": path, \"conversation\": [{\"role\": \"user\"|\"assistant\", \"text\": ...}]} (stage 2)",
        "FILE", required: true);
    private readonly Option<int?> _stage = CliOption.Int("--stage", "1: image-caption pairs; 2: conversations in the chat template");
    private readonly Option<string?> _out = CliOption.Text("--out", "Folder for llama_proj.pth, minigpt4.json and the resumable state", "DIR", required: true);
    private readonly Option<int?> _steps = CliOption.Int("--steps", "Optimizer steps of the run [default: 100]");
    private readonly Option<int?> _batch = CliOption.Int("--batch", "Examples per step [default: 4]", "B");
    private readonly Option<float?> _lr = CliOption.Number("--lr", "Peak learning rate [default: 1e-4 in stage 1, 3e-5 in stage 2, as the reference]");
    private readonly Option<int?> _warmup = CliOption.Int("--warmup", "Warm-up steps [default: a twentieth of --steps]");
    private readonly Option<long?> _seed = CliOption.Long("--seed", "Seed of the example order and of --reset-projection [default: 42]", "S");
    private readonly Option<int?> _every = CliOption.Int("--checkpoint-every", "Save every N steps (and at the end) [default: 50]");
    private readonly Option<bool> _reset = CliOption.Flag("--reset-projection", "Start from a freshly initialised projection instead of the model's");
    private readonly Option<bool> _resume = CliOption.Flag("--resume", "Continue the run saved in --out (same data and options)");
    private readonly Option<int?> _threads = CliOption.Int("--threads", "libtorch intra-op threads [default: libtorch's]");

    public TrainCommand() : base("train",
        "Train the projection (llama_proj) of a MiniGPT-4 model with the vision tower, Q-Former and language model frozen, " +
        "as the reference's stage 1 or stage 2 (docs/training.md). Writes a checkpoint in the release layout and a " +
        "minigpt4.json that loads it; prints that manifest's path.")
    {
        foreach (var o in new Option[] { _model, _data, _stage, _out, _steps, _batch, _lr, _warmup, _seed, _every, _reset, _resume, _threads }) Options.Add(o);
        _stage.Required = true;
        CliOption.Range(_stage, 1, 2);
        CliOption.Range(_steps, 1, 100_000_000);
        CliOption.Range(_batch, 1, 100_000);
        CliOption.Range(_warmup, 0, 100_000_000);
        CliOption.Range(_every, 1, 100_000_000);
        CliOption.Range(_threads, 1, 1024);
        CliOption.Positive(_lr);
        CliOption.Seed(_seed, int.MaxValue);
        SetAction(Run);
    }

    private async Task<int> Run(ParseResult r, CancellationToken ct)
    {
        var stage = (TrainingStage)r.GetValue(_stage)!.Value;
        var options = new ProjectionTrainingOptions
        {
            Stage = stage,
            Steps = r.GetValue(_steps) ?? 100,
            BatchSize = r.GetValue(_batch) ?? 4,
            LearningRate = r.GetValue(_lr),
            WarmupSteps = r.GetValue(_warmup),
            Seed = (int)(r.GetValue(_seed) ?? 42),
            CheckpointEvery = r.GetValue(_every) ?? 50,
            ResetProjection = r.GetValue(_reset),
            Threads = r.GetValue(_threads),
        };
        options.Validate();
        var data = TrainingData.ReadJsonl(r.GetValue(_data)!, stage);
        Console.Error.WriteLine($"{data.Count} examples, stage {(int)stage}, {options.Steps} steps of {options.BatchSize}");
        using var trainer = await ProjectionTrainer.LoadAsync(r.GetValue(_model)!, options, cancellationToken: ct);
        var every = Math.Max(1, options.Steps / 100);
        var progress = new Reports(p =>
        {
            if (p.Step % every != 0 && p.Step != p.TotalSteps) return;
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  lr {p.LearningRate:G3}  {p.StepsPerSecond:F2} steps/s  eta {p.EstimatedRemaining:hh\\:mm\\:ss}"));
        });
        var result = await trainer.TrainAsync(data, r.GetValue(_out)!, r.GetValue(_resume), progress, ct);
        Console.WriteLine(result.ManifestPath);
        return ExitCodes.Ok;
    }

    /// <summary>Prints on the training thread, in step order.</summary>
    private sealed class Reports(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
