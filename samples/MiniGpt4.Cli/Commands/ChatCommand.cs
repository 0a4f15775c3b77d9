using System.CommandLine;
using System.Diagnostics;
using MiniGpt4.Cli.Options;
using MiniGpt4.Cli.Output;

namespace MiniGpt4.Cli.Commands;

/// <summary>
/// <c>chat</c>: a conversation about one image. Questions come from stdin, one a line, until an empty line or end
/// of input; each answer goes to stdout and its summary line (tokens, speed, prefill) to stderr. <c>--save-session</c>
/// writes the conversation (turns, image embeddings, key/value cache) after each answer; <c>--resume</c> continues a
/// saved one, in this or a later process, with the same tokens it would have given.
/// </summary>
internal sealed class ChatCommand : ModelCommand
{
    private readonly Option<string?> _image = CliOption.Text("--image", "The image to talk about (required unless --resume is given)", "FILE");
    private readonly Option<string?> _save = CliOption.Text("--save-session", "Write the conversation to FILE after each answer (replaced by renaming)", "FILE");
    private readonly Option<string?> _resume = CliOption.Text("--resume", "Continue the conversation saved in FILE by --save-session (same model)", "FILE");
    private readonly GenerationOptionSet _generation = new();
    private readonly LoadOptionSet _load = new();

    public ChatCommand() : base("chat",
        "Talk about an image: questions from stdin, one a line, until an empty line or end of input; " +
        "each answer to stdout, its summary line to stderr.")
    {
        Options.Add(_image);
        Options.Add(_save);
        Options.Add(_resume);
        _generation.AddTo(this);
        _load.AddTo(this);
    }

    protected override async Task<int> RunAsync(ParseResult r, string model, CancellationToken ct)
    {
        var image = r.GetValue(_image);
        var save = r.GetValue(_save);
        var resume = r.GetValue(_resume);
        if (image is null && resume is null)
        {
            Console.Error.WriteLine("chat needs --image FILE (a new conversation) or --resume FILE (a saved one).");
            return ExitCodes.Usage;
        }
        var options = _generation.Read(r);
        using var pipeline = await MiniGptPipeline.LoadAsync(model, _load.Read(r), ProgressPrinter.Create(), ct);
        ChatSession session;
        if (resume is null) session = pipeline.CreateSession();
        else
        {
            await using var file = File.OpenRead(resume);
            session = await pipeline.RestoreSessionAsync(file, ct);
        }
        using var _ = session;
        if (image is not null) await session.AddImageAsync(ImageInput.FromFile(image), ct);
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
            if (save is not null)
            {
                var tmp = save + ".tmp";
                await using (var file = File.Create(tmp)) await session.SaveAsync(file, ct);
                File.Move(tmp, save, overwrite: true);
            }
        }
    }
}
