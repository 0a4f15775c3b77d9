using System.CommandLine;
using MiniGpt4.Cli.Options;
using MiniGpt4.Cli.Output;

namespace MiniGpt4.Cli.Commands;

/// <summary><c>convert</c>: rewrite a model as safetensors in one dtype, so later loads map the weights without conversion.</summary>
internal sealed class ConvertCommand : ModelCommand
{
    private readonly Option<string?> _out = CliOption.Text("--out", "The folder to write (minigpt4.json and safetensors)", "DIR", required: true);
    private readonly Option<string?> _dtype = CliOption.Word("--dtype",
        "The dtype to write; int8/int4 quantize the language model's linear layers (bf16 elsewhere, 8-bit head) [default: bfloat16]",
        ["float32", "fp32", "bfloat16", "bf16", "float16", "fp16", "int8", "int4"]);

    public ConvertCommand() : base("convert", "Convert a model to a safetensors bundle in one dtype (or int8/int4 quantized); prints the new manifest's path.")
    {
        Options.Add(_out);
        Options.Add(_dtype);
    }

    protected override async Task<int> RunAsync(ParseResult r, string model, CancellationToken ct)
    {
        var word = r.GetValue(_dtype)?.ToLowerInvariant() ?? "bfloat16";
        var manifest = word switch
        {
            "int8" => await MiniGptConverter.ConvertQuantizedAsync(model, r.GetValue(_out)!, MiniGptQuantization.Int8, ProgressPrinter.Create(), ct),
            "int4" => await MiniGptConverter.ConvertQuantizedAsync(model, r.GetValue(_out)!, MiniGptQuantization.Int4, ProgressPrinter.Create(), ct),
            "float32" or "fp32" => await MiniGptConverter.ConvertAsync(model, r.GetValue(_out)!, MiniGptDType.Float32, ProgressPrinter.Create(), ct),
            "float16" or "fp16" => await MiniGptConverter.ConvertAsync(model, r.GetValue(_out)!, MiniGptDType.Float16, ProgressPrinter.Create(), ct),
            _ => await MiniGptConverter.ConvertAsync(model, r.GetValue(_out)!, MiniGptDType.BFloat16, ProgressPrinter.Create(), ct),
        };
        Console.WriteLine($"wrote {manifest}");
        return ExitCodes.Ok;
    }
}
