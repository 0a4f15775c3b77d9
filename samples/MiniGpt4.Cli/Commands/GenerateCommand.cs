using System.CommandLine;
using System.Text;
using MiniGpt4.Abstractions;
using MiniGpt4.Cli.Options;
using MiniGpt4.Cli.Output;

namespace MiniGpt4.Cli.Commands;

/// <summary><c>generate</c>: one answer to one prompt, about an image or (without --image) from the language model alone.</summary>
internal sealed class GenerateCommand : ModelCommand
{
    private readonly Option<string?> _image = CliOption.Text("--image", "The image to ask about; without it the language model runs alone", "FILE");
    private readonly Option<string?> _prompt = CliOption.Text("--prompt", "The question or text", "TEXT", required: true);
    private readonly Option<bool> _raw = CliOption.Flag("--raw", "Feed BOS + the prompt with no template to the language model alone (ignores --image)");
    private readonly Option<OutputFormat?> _format = OutputFormatOption.Create(
        "text streams the answer; json prints one object (text, token_ids, usage, timings, ...) [default: text]");
    private readonly GenerationOptionSet _generation = new();
    private readonly LoadOptionSet _load = new();

    public GenerateCommand() : base("generate",
        "Answer one prompt about an image, or without --image with the language model alone. --temperature 0 means greedy.",
        "minigpt4.json, the folder holding it, or without --image a Hugging Face LLaMA folder " +
        "(required; the root --help says where to get the weights)")
    {
        Options.Add(_image);
        Options.Add(_prompt);
        _generation.AddTo(this);
        Options.Add(_raw);
        _load.AddTo(this);
        Options.Add(_format);
    }

    protected override async Task<int> RunAsync(ParseResult r, string model, CancellationToken ct)
    {
        var prompt = r.GetValue(_prompt)!;
        var json = r.GetValue(_format) == OutputFormat.Json;
        var options = _generation.Read(r);
        using var pipeline = await MiniGptPipeline.LoadAsync(model, _load.Read(r), json ? null : ProgressPrinter.Create(), ct);
        MiniGptResponse response;
        if (r.GetValue(_raw))
            response = await RawAsync(pipeline, prompt, options, json, ct);
        else
        {
            using var session = pipeline.CreateSession();
            if (r.GetValue(_image) is { } image) session.AddImage(ImageInput.FromFile(image), ct);
            await foreach (var delta in session.StreamAsync(prompt, options, ct))
                if (!json) Console.Write(delta);
            response = session.LastResponse!;
        }
        ct.ThrowIfCancellationRequested(); // a cancelled answer is partial: report the cancellation, not the answer
        if (json) Console.WriteLine(Json.Response(response));
        else Console.WriteLine();
        return ExitCodes.Ok;
    }

    private static async Task<MiniGptResponse> RawAsync(MiniGptPipeline pipeline, string prompt, GenerationOptions options, bool quiet, CancellationToken ct)
    {
        var ids = pipeline.LanguageModel.Tokenize(prompt, addBos: true);
        var seq = new PromptSequence().AddTokens(ids);
        var text = new StringBuilder();
        var tokens = new List<int>();
        GenerationUpdate? last = null;
        await foreach (var u in pipeline.GenerateAsync(seq, options, ct))
        {
            if (!quiet) Console.Write(u.Text);
            text.Append(u.Text);
            tokens.AddRange(u.TokenIds);
            last = u;
        }
        return new MiniGptResponse
        {
            Text = text.ToString(), RawText = text.ToString(), TokenIds = tokens, FinishReason = last!.FinishReason!.Value,
            Usage = last.Usage!, Timings = last.Timings!, Prompt = prompt, SegmentIds = new[] { ids }, SequenceScore = last.SequenceScore,
        };
    }
}
