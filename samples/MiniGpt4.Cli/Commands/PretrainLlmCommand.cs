using System.CommandLine;
using System.Globalization;
using MiniGpt4.Cli.Options;
using MiniGpt4.SyntheticWorld;
using MiniGpt4.Training;

namespace MiniGpt4.Cli.Commands;

/// <summary>
/// <c>pretrain-llm</c>: trains the toy model's language model from scratch on the synthetic world's text
/// (<see cref="LanguagePretrainer"/>, docs/toy-model.md), then scores it on held-out scenes fed their true scene code:
/// progress and scores on stderr, the written folder on stdout; Ctrl+C stops between steps (exit 130).
/// </summary>
internal sealed class PretrainLlmCommand : Command
{
    private readonly Option<string?> _out = CliOption.Text("--out", "Folder for config.json, model.safetensors and tokenizer.model", "DIR", required: true);
    private readonly Option<int?> _steps = CliOption.Int("--steps", "Optimizer steps [default: 2000]");
    private readonly Option<int?> _batch = CliOption.Int("--batch", "Sequences per step [default: 16]", "B");
    private readonly Option<float?> _lr = CliOption.Number("--lr", "Peak learning rate [default: 1e-3]");
    private readonly Option<int?> _warmup = CliOption.Int("--warmup", "Warm-up steps [default: 30]");
    private readonly Option<long?> _seed = CliOption.Long("--seed", "Seed of the initial weights and the noise [default: 1]", "S");
    private readonly Option<long?> _worldSeed = CliOption.Long("--world-seed", "Synthetic world seed of the training scenes [default: 1000]", "S");
    private readonly Option<int?> _evalScenes = CliOption.Int("--eval-scenes", "Held-out scenes to score at the end (0: none) [default: 200]", "N");
    private readonly Option<int?> _dim = CliOption.Int("--dim", "hidden_size [default: 128]", "N");
    private readonly Option<int?> _layers = CliOption.Int("--layers", "Decoder layers [default: 4]", "N");
    private readonly Option<int?> _heads = CliOption.Int("--heads", "Attention heads [default: 4]", "N");
    private readonly Option<bool> _resume = CliOption.Flag("--resume", "Continue the run saved in --out (same options; the state is saved every 50 steps)");
    private readonly Option<bool> _evalOnly = CliOption.Flag("--eval-only", "Do not train: score the language model already in --out");
    private readonly Option<bool> _evalFloat32 = CliOption.Flag("--eval-float32", "Score in float32 instead of the engine's default bfloat16");
    private readonly Option<int?> _showWrong = CliOption.Int("--show-wrong", "Print up to N wrong answers [default: 0]", "N");
    private readonly Option<int?> _threads = CliOption.Int("--threads", "libtorch intra-op threads [default: libtorch's]");

    public PretrainLlmCommand() : base("pretrain-llm",
        "Pretrain the toy model's language model (a small LLaMA with its own SentencePiece tokenizer) on the synthetic " +
        "world's captions and questions, with the scene code in the image slot (docs/toy-model.md). Writes a Hugging Face " +
        "LLaMA folder and prints its path; scores held-out scenes fed their true scene code.")
    {
        foreach (var o in new Option[] { _out, _steps, _batch, _lr, _warmup, _seed, _worldSeed, _evalScenes, _dim, _layers, _heads, _resume, _evalOnly, _evalFloat32, _showWrong, _threads }) Options.Add(o);
        CliOption.Range(_steps, 1, 100_000_000);
        CliOption.Range(_batch, 1, 100_000);
        CliOption.Range(_evalScenes, 0, 1_000_000);
        CliOption.Range(_threads, 1, 1024);
        CliOption.Range(_warmup, 0, 100_000_000);
        CliOption.Positive(_lr);
        CliOption.Seed(_seed, int.MaxValue);
        SetAction(Run);
    }

    private async Task<int> Run(ParseResult r, CancellationToken ct)
    {
        var defaults = new LanguagePretrainingOptions();
        var options = defaults with
        {
            Steps = r.GetValue(_steps) ?? defaults.Steps,
            BatchSize = r.GetValue(_batch) ?? defaults.BatchSize,
            LearningRate = r.GetValue(_lr) ?? defaults.LearningRate,
            WarmupSteps = r.GetValue(_warmup) ?? defaults.WarmupSteps,
            Seed = (int)(r.GetValue(_seed) ?? defaults.Seed),
            WorldSeed = r.GetValue(_worldSeed) ?? defaults.WorldSeed,
            HiddenSize = r.GetValue(_dim) ?? defaults.HiddenSize,
            IntermediateSize = r.GetValue(_dim) is int d ? (d * 11 / 4 + 31) / 32 * 32 : defaults.IntermediateSize,
            Layers = r.GetValue(_layers) ?? defaults.Layers,
            Heads = r.GetValue(_heads) ?? defaults.Heads,
            Threads = r.GetValue(_threads),
        };
        options.Validate();
        var dir = r.GetValue(_out)!;
        var every = Math.Max(1, options.Steps / 100);
        var progress = new Reports(p =>
        {
            if (p.Step % every != 0 && p.Step != p.TotalSteps) return;
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"step {p.Step}/{p.TotalSteps}  loss {p.Loss:F4}  lr {p.LearningRate:G3}  {p.StepsPerSecond:F2} steps/s  eta {p.EstimatedRemaining:hh\\:mm\\:ss}"));
        });
        if (!r.GetValue(_evalOnly))
        {
            var result = await LanguagePretrainer.TrainAsync(dir, options, r.GetValue(_resume), progress, ct);
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"trained {result.Steps} steps in {result.Elapsed.TotalSeconds:F0} s, final loss {result.FinalLoss:F4}"));
        }
        var scenes = r.GetValue(_evalScenes) ?? 200;
        if (scenes > 0)
        {
            var wrong = r.GetValue(_showWrong) ?? 0;
            var dtype = r.GetValue(_evalFloat32) ? MiniGptDType.Float32 : MiniGptDType.BFloat16;
            var scores = await LanguagePretrainer.EvaluateAsync(dir, LanguagePretrainer.HeldOutWorldSeed, scenes, dtype, cancellationToken: ct,
                onAnswer: (q, answer) =>
                {
                    if (wrong > 0 && !AnswerChecker.IsCorrect(q.Kind, q.Facts, answer) && wrong-- > 0)
                        Console.Error.WriteLine($"wrong: {q.Question} -> \"{answer}\" (expected \"{q.Answer}\"; scene: {q.Facts.Count} shapes, " +
                            $"colours {string.Join("/", q.Facts.Colours.Select(Palette.Word))}, shapes {string.Join("/", q.Facts.Shapes.Select(Palette.Word))})");
                });
            foreach (var (kind, s) in scores)
                Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{WorldDataset.KindWord(kind),-8}  {s.Correct}/{s.Total}  {s.Accuracy:P1}  (held-out world seed {LanguagePretrainer.HeldOutWorldSeed}, true scene code)"));
        }
        Console.WriteLine(dir);
        return ExitCodes.Ok;
    }

    private sealed class Reports(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
