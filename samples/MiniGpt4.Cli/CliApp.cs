using System.CommandLine;
using System.CommandLine.Help;
using System.CommandLine.Invocation;
using MiniGpt4.Cli.Commands;
using MiniGpt4.Cli.Parsing;

namespace MiniGpt4.Cli;

/// <summary>
/// The command line: one <see cref="Command"/> per verb (Commands/), parsed by System.CommandLine. Parse errors
/// exit 2 with a "did you mean" for misspelt options; library errors exit 1, argument errors 2, Ctrl+C 130.
/// To add a verb, write a Command (a <see cref="ModelCommand"/> when it loads a model) and list it in <see cref="Verbs"/>.
/// </summary>
internal static class CliApp
{
    private static IEnumerable<Command> Verbs() =>
    [
        new ChatCommand(),
        new GenerateCommand(),
        new BatchCommand(),
        new TokenizeCommand(),
        new ConvertCommand(),
        new SynthCommand(),
        new WorldCommand(),
        new WorldScoreCommand(),
        new TrainCommand(),
        new PretrainLlmCommand(),
        new TrainToyCommand(),
        new BenchCommand(),
    ];

    public static RootCommand CreateRoot()
    {
        var root = new RootCommand(HelpTexts.Root);
        foreach (var verb in Verbs()) root.Subcommands.Add(verb);
        var help = root.Options.OfType<HelpOption>().Single();
        help.Action = new RootHelpAction((SynchronousCommandLineAction)help.Action!, root);
        return root;
    }

    public static async Task<int> RunAsync(string[] args)
    {
        // No arguments, or "help [verb]", show the help as --help does.
        if (args.Length == 0) args = ["--help"];
        else if (args[0] == "help") args = [.. args.Skip(1), "--help"];

        var root = CreateRoot();
        // No response files: a prompt such as "@file" is text, not a file to expand.
        var result = root.Parse(args, new ParserConfiguration { ResponseFileTokenReplacer = null });
        if (result.Action is ParseErrorAction) return ParseErrorReporter.Report(result, Console.Error);

        using var cts = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            if (cts.IsCancellationRequested) return; // a second Ctrl+C ends the process at once
            e.Cancel = true;
            cts.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        try
        {
            var config = new InvocationConfiguration { EnableDefaultExceptionHandler = false, ProcessTerminationTimeout = null };
            return await result.InvokeAsync(config, cts.Token);
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine("cancelled");
            return ExitCodes.Cancelled;
        }
        catch (MiniGptException ex)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            return ExitCodes.Error;
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            return ExitCodes.Usage;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    /// <summary>The standard help, plus where to get the weights under the root's.</summary>
    private sealed class RootHelpAction(SynchronousCommandLineAction help, RootCommand root) : SynchronousCommandLineAction
    {
        public override bool ClearsParseErrors => true;

        public override int Invoke(ParseResult parseResult)
        {
            var exit = help.Invoke(parseResult);
            if (parseResult.CommandResult.Command == root)
            {
                var output = parseResult.InvocationConfiguration.Output;
                output.WriteLine("Weights:");
                output.WriteLine(HelpTexts.Weights);
                output.WriteLine();
            }
            return exit;
        }
    }
}
