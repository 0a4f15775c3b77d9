using System.CommandLine;
using MiniGpt4.Cli.Options;
using MiniGpt4.Cli.Output;

namespace MiniGpt4.Cli.Commands;

/// <summary><c>convert</c>: rewrite a model as safetensors in one dtype, so later loads map the weights without conversion.</summary>
internal sealed class ConvertCommand : ModelCommand
{
    private readonly Option<string?> _out = CliOption.Text("--out", "The folder to write (minigpt4.json and safetensors)", "DIR", required: true);
    private readonly Option<MiniGptDType?> _dtype = LoadOptionSet.DTypeOption("The dtype to write [default: bfloat16]");

    public ConvertCommand() : base("convert", "Convert a model to a safetensors bundle in one dtype; prints the new manifest's path.")
    {
        Options.Add(_out);
        Options.Add(_dtype);
    }

    protected override async Task<int> RunAsync(ParseResult r, string model, CancellationToken ct)
    {
        var dtype = r.GetValue(_dtype) ?? MiniGptDType.BFloat16;
        var manifest = await MiniGptConverter.ConvertAsync(model, r.GetValue(_out)!, dtype, ProgressPrinter.Create(), ct);
        Console.WriteLine($"wrote {manifest}");
        return ExitCodes.Ok;
    }
}
