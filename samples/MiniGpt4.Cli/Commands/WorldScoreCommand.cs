using System.CommandLine;
using System.Globalization;
using MiniGpt4.Cli.Options;
using MiniGpt4.Cli.Output;
using MiniGpt4.SyntheticWorld;

namespace MiniGpt4.Cli.Commands;

/// <summary><c>world-score</c>: the four accuracies (count, colour, shape, describe) of batch's answers to a world's eval.jsonl.</summary>
internal sealed class WorldScoreCommand : Command
{
    private readonly Option<string?> _eval = CliOption.Text("--eval", "The eval.jsonl that world wrote", "FILE", required: true);
    private readonly Option<string?> _answers = CliOption.Text("--answers", "batch's output for that file", "FILE", required: true);
    private readonly Option<OutputFormat?> _format = OutputFormatOption.Create(
        "text prints one line per kind; json prints {\"count\": {\"correct\", \"total\", \"missing\", \"accuracy\"}, ...} [default: text]");

    public WorldScoreCommand() : base("world-score",
        "Score batch's answers to a world's eval.jsonl by the world's answer rules: one accuracy per question kind " +
        "(a question without an answer, or with an error line, counts as wrong).")
    {
        Options.Add(_eval);
        Options.Add(_answers);
        Options.Add(_format);
        foreach (var o in new[] { _eval, _answers })
            o.Validators.Add(r =>
            {
                if (r.GetValueOrDefault<string?>() is { } f && !File.Exists(f)) r.AddError($"invalid value for {o.Name}: '{f}' does not exist");
            });
        SetAction(r =>
        {
            var scores = WorldEvaluation.Score(File.ReadLines(r.GetValue(_eval)!), File.ReadLines(r.GetValue(_answers)!));
            if (r.GetValue(_format) == OutputFormat.Json)
                Console.WriteLine(Json.Serialize(scores.ToDictionary(s => WorldDataset.KindWord(s.Kind), s => new Dictionary<string, object>
                {
                    ["correct"] = s.Correct, ["total"] = s.Total, ["missing"] = s.Missing, ["accuracy"] = s.Accuracy,
                })));
            else
                foreach (var s in scores)
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{WorldDataset.KindWord(s.Kind),-9} {s.Correct,5} / {s.Total,-5} {s.Accuracy,7:P1}{(s.Missing > 0 ? $"  ({s.Missing} unanswered)" : "")}"));
            return ExitCodes.Ok;
        });
    }
}
