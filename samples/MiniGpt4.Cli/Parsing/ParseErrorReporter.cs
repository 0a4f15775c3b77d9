using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using MiniGpt4.Cli.Commands;

namespace MiniGpt4.Cli.Parsing;

/// <summary>
/// Writes a command line's parse errors to stderr: each unknown option or command with the nearest known one
/// ("did you mean"), each bad or missing value naming its option, then where to find help. Returns exit code 2.
/// </summary>
internal static class ParseErrorReporter
{
    public static int Report(ParseResult result, TextWriter err)
    {
        var commandResult = result.CommandResult;
        var command = commandResult.Command;
        var unmatched = result.UnmatchedTokens;
        var lines = new List<string>();
        var unknownCommand = false;
        var afterUnknownOption = false;
        foreach (var token in unmatched)
        {
            if (IsOptionLike(token))
            {
                lines.Add(UnknownOption(token, commandResult, result.RootCommandResult.Command));
                afterUnknownOption = token.IndexOfAny(['=', ':']) < 0; // "--x=1" carries its value
            }
            else if (afterUnknownOption)
                afterUnknownOption = false; // most likely the unknown option's value: one error is enough
            else if (command is RootCommand && lines.Count == 0)
            {
                lines.Add(Unknown("command", token, command.Subcommands.Where(c => !c.Hidden).Select(c => c.Name)));
                unknownCommand = true;
                break; // what follows belongs to the command that was not found
            }
            else
                lines.Add($"unexpected argument '{token}'");
        }
        foreach (var e in result.Errors)
        {
            if (IsUnmatchedTokenError(e, unmatched)) continue;
            if (unknownCommand && e.SymbolResult is CommandResult) continue; // "Required command was not provided."
            lines.Add(e.Message);
        }
        foreach (var line in lines.Distinct()) err.WriteLine($"error: {line}");
        if (command is ModelCommand m && result.GetResult(m.Model) is null && ModelCommand.BundledModel is null)
        {
            err.WriteLine();
            err.WriteLine(HelpTexts.NoModel);
        }
        err.WriteLine($"Run '{HelpCommandLine(commandResult, unknownCommand)}' for usage.");
        return ExitCodes.Usage;
    }

    private static bool IsOptionLike(string token) =>
        token.Length > 1 && token[0] == '-' && !double.TryParse(token, NumberStyles.Float, CultureInfo.InvariantCulture, out _);

    private static string UnknownOption(string token, CommandResult commandResult, Command root)
    {
        var end = token.IndexOfAny(['=', ':']);
        var name = end > 0 ? token[..end] : token;
        var known = KnownOptions(commandResult).SelectMany(o => o.Aliases.Prepend(o.Name)).Where(n => n.StartsWith('-'));
        var message = Unknown("option", name, known);
        if (message.Contains("did you mean", StringComparison.Ordinal)) return message;
        var owners = root.Subcommands.Where(c => c != commandResult.Command && c.Options.Any(o => o.Name == name || o.Aliases.Contains(name)))
            .Select(c => c.Name).ToList();
        return owners.Count == 0 ? message : $"{message} (it is an option of {string.Join(", ", owners)})";
    }

    private static string Unknown(string what, string name, IEnumerable<string> known)
    {
        var near = EditDistance.Nearest(name, known);
        var message = $"unknown {what} '{name}'";
        return near.Count == 0 ? message : $"{message}; did you mean {string.Join(" or ", near.Select(n => $"'{n}'"))}?";
    }

    /// <summary>The options valid on the parsed command: its own and the recursive ones of its ancestors (--help).</summary>
    private static IEnumerable<Option> KnownOptions(CommandResult commandResult)
    {
        foreach (var o in commandResult.Command.Options.Where(o => !o.Hidden)) yield return o;
        for (var parent = commandResult.Parent as CommandResult; parent is not null; parent = parent.Parent as CommandResult)
            foreach (var o in parent.Command.Options.Where(o => o.Recursive && !o.Hidden)) yield return o;
    }

    /// <summary>The library's own "Unrecognized command or argument" errors, which the lines above replace.</summary>
    private static bool IsUnmatchedTokenError(ParseError e, IReadOnlyList<string> unmatched) =>
        e.SymbolResult is null or CommandResult && unmatched.Any(t => e.Message.Contains($"'{t}'", StringComparison.Ordinal));

    private static string HelpCommandLine(CommandResult commandResult, bool unknownCommand)
    {
        var names = new List<string>();
        for (SymbolResult? r = commandResult; r is CommandResult c; r = c.Parent)
            if (c.Command is not RootCommand) names.Insert(0, c.Command.Name);
        names.Insert(0, RootCommand.ExecutableName);
        if (unknownCommand) names.RemoveRange(1, names.Count - 1);
        return string.Join(' ', names) + " --help";
    }
}
