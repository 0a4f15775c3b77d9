using System.CommandLine;
using MiniGpt4.Cli.Options;

namespace MiniGpt4.Cli.Commands;

/// <summary>
/// A verb that loads a model: it has --model, and without it prints where to get the weights (stderr, exit 2)
/// instead of running. Derive new model verbs from this and implement <see cref="RunAsync"/>.
/// </summary>
internal abstract class ModelCommand : Command
{
    protected ModelCommand(string name, string description, string modelDescription = HelpTexts.ModelOption) : base(name, description)
    {
        Model = CliOption.Text("--model", modelDescription, "PATH");
        Options.Add(Model);
        SetAction(async (result, ct) =>
        {
            if (result.GetValue(Model) is not { } model)
            {
                Console.Error.WriteLine(HelpTexts.NoModel);
                return ExitCodes.Usage;
            }
            return await RunAsync(result, model, ct);
        });
    }

    /// <summary>--model.</summary>
    public Option<string?> Model { get; }

    /// <summary>Runs the verb with the model path; returns the exit code.</summary>
    protected abstract Task<int> RunAsync(ParseResult result, string model, CancellationToken ct);
}
