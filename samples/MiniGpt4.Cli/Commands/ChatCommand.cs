using System.CommandLine;
using System.Diagnostics;
using MiniGpt4.Cli.Options;
using MiniGpt4.Cli.Output;

namespace MiniGpt4.Cli.Commands;

/// <summary>
/// <c>chat</c>: a conversation about one image. Questions come from stdin, one a line, until an empty line or end
/// of input; each answer goes to stdout and its summary line (tokens, speed, prefill) to stderr.
/// </summary>
internal sealed class ChatCommand : ModelCommand
{
    private readonly Option<string?> _image = CliOption.Text("--image", "The image to talk about", "FILE", required: true);
    private readonly GenerationOptionSet _generation = new();
    private readonly LoadOptionSet _load = new();

    public ChatCommand() : base("chat",
        "Talk about an image: questions from stdin, one a line, until an empty line or end of input; " +
        "each answer to stdout, its summary line to stderr.")
    {
        Options.Add(_image);
        _generation.AddTo(this);
        _load.AddTo(this);
    }

    protected override async Task<int> RunAsync(ParseResult r, string model, CancellationToken ct)
    {
        var image = r.GetValue(_image)!;
        var options = _generation.Read(r);
        using var pipeline = await MiniGptPipeline.LoadAsync(model, _load.Read(r), ProgressPrinter.Create(), ct);
        using var session = pipeline.CreateSession();
        session.AddImage(ImageInput.FromFile(image), ct);
        // The banner and the "> " prompt are for a person at a terminal; stdout carries only answers.
        var interactive = !Console.IsInputRedirected;
        if (interactive) Console.Error.WriteLine("Ask about the image (empty line or Ctrl-D to quit).");
        while (true)
        {
            if (interactive) Console.Error.Write("> ");
            // Ctrl+C at the prompt ends the chat at once rather than after the next line.
            var q = await Task.Run(() => Console.ReadLine(), CancellationToken.None).WaitAsync(ct);
            if (string.IsNullOrWhiteSpace(q)) return ExitCodes.Ok;
            var sw = Stopwatch.StartNew();
            await foreach (var delta in session.StreamAsync(q, options, ct)) Console.Write(delta);
            ct.ThrowIfCancellationRequested();
            var a = session.LastResponse!;
            Console.WriteLine();
            Console.Error.WriteLine($"[{a.Usage.GeneratedTokens} tokens, {a.Timings.DecodeTokensPerSecond:F1} tok/s, prefilled {a.Usage.PrefilledPromptTokens} of {a.Usage.PromptTokens}, {sw.Elapsed.TotalSeconds:F1} s]");
        }
    }
}
