using System.CommandLine;
using MiniGpt4.Cli.Options;
using MiniGpt4.Cli.World;
using MiniGpt4.SyntheticWorld;

namespace MiniGpt4.Cli.Commands;

/// <summary>
/// <c>world</c>: a data set of the synthetic visual world (shapes on plain backgrounds) for training and evaluating
/// the toy model: images, the stage-1 or stage-2 training file and an evaluation file. See <see cref="WorldDataset"/>.
/// </summary>
internal sealed class WorldCommand : Command
{
    private readonly Option<string?> _out = CliOption.Text("--out", "The folder to write (created if missing)", "DIR", required: true);
    private readonly Option<int?> _count = CliOption.Int("--count", "How many images", "N");
    private readonly Option<long?> _seed = CliOption.Long("--seed", "Random seed; the same seed writes the same files [default: 0]", "S");
    private readonly Option<int?> _stage = CliOption.Int("--stage",
        "1: stage1.jsonl, {\"image\", \"text\"} captions; 2: stage2.jsonl, {\"image\", \"conversation\"} question-answer pairs [default: 1]", "1|2");
    private readonly Option<string?> _renderer = CliOption.Word("--renderer",
        "world: the world's own rasteriser and ImageSharp's encoders; skia: the same scenes drawn and encoded by SkiaSharp (held-out images from other software) [default: world]",
        ["world", "skia"]);

    public WorldCommand() : base("world",
        "Write images of the synthetic visual world (one to four coloured circles, squares and triangles on a plain background) " +
        "with a training file (stage1.jsonl or stage2.jsonl) and eval.jsonl (questions with their expected facts; a request file for batch). " +
        "Deterministic for a seed; prints the training file's path.")
    {
        _count.Required = true;
        Options.Add(_out);
        Options.Add(_count);
        Options.Add(_seed);
        Options.Add(_stage);
        Options.Add(_renderer);
        CliOption.Range(_count, 1, 10_000_000);
        CliOption.Range(_stage, 1, 2);
        CliOption.Seed(_seed);
        SetAction((r, ct) =>
        {
            var folder = r.GetValue(_out)!;
            var count = r.GetValue(_count)!.Value;
            try
            {
                var progress = new ImagesWritten(count);
                Action<Scene, string> save = r.GetValue(_renderer) == "skia" ? SkiaSceneRenderer.Save : SceneRenderer.Save;
                Console.WriteLine(WorldDataset.Write(folder, count, r.GetValue(_seed) ?? 0, r.GetValue(_stage) ?? 1, save, progress, ct));
                return Task.FromResult(ExitCodes.Ok);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"error: cannot write the data set to '{folder}': {ex.Message}");
                return Task.FromResult(ExitCodes.Error);
            }
        });
    }

    /// <summary>Progress on stderr every thousand images and at the end, reported on the writing thread.</summary>
    private sealed class ImagesWritten(int count) : IProgress<int>
    {
        public void Report(int value)
        {
            if (value == count || value % 1000 == 0) Console.Error.WriteLine($"[world] {value} of {count} images");
        }
    }
}
