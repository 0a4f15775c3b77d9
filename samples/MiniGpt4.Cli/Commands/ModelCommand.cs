using System.CommandLine;
using MiniGpt4.Cli.Options;

namespace MiniGpt4.Cli.Commands;

/// <summary>
/// A verb that loads a model: it has --model; without it the verb uses the bundled toy model (<see cref="BundledModel"/>,
/// the folder <c>toy-model/</c> next to the assembly) when the build output has one, and otherwise prints where to get
/// the weights (stderr, exit 2) instead of running. Derive new model verbs from this and implement <see cref="RunAsync"/>.
/// </summary>
internal abstract class ModelCommand : Command
{
    protected ModelCommand(string name, string description, string modelDescription = HelpTexts.ModelOption) : base(name, description)
    {
        Model = CliOption.Text("--model", modelDescription, "PATH");
        Options.Add(Model);
        SetAction(async (result, ct) =>
        {
            if ((result.GetValue(Model) ?? (UsesBundledModel ? BundledModel : null)) is not { } model)
            {
                Console.Error.WriteLine(HelpTexts.NoModel);
                return ExitCodes.Usage;
            }
            return await RunAsync(result, model, ct);
        });
    }

    /// <summary>The bundled toy model's manifest (samples/toy-model, copied to the build output), or null when the output has none.</summary>
    public static string? BundledModel
    {
        get
        {
            var path = Path.Combine(AppContext.BaseDirectory, "toy-model", "minigpt4.json");
            return File.Exists(path) ? path : null;
        }
    }

    /// <summary>Whether the verb runs the bundled toy model when --model is absent (bench measures the model it is given only).</summary>
    protected virtual bool UsesBundledModel => true;

    /// <summary>--model.</summary>
    public Option<string?> Model { get; }

    /// <summary>Runs the verb with the model path; returns the exit code.</summary>
    protected abstract Task<int> RunAsync(ParseResult result, string model, CancellationToken ct);
}
