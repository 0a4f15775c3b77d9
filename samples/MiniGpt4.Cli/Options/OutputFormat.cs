using System.CommandLine;

namespace MiniGpt4.Cli.Options;

/// <summary>What a verb writes to stdout.</summary>
internal enum OutputFormat
{
    Text,
    Json,
}

internal static class OutputFormatOption
{
    /// <summary>--format text|json (text when absent).</summary>
    public static Option<OutputFormat?> Create(string description) => CliOption.Choice("--format", description,
        new Dictionary<string, OutputFormat> { ["text"] = OutputFormat.Text, ["json"] = OutputFormat.Json });
}
