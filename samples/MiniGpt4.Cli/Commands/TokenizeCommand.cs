using System.CommandLine;
using MiniGpt4.Cli.Options;
using MiniGpt4.Cli.Output;

namespace MiniGpt4.Cli.Commands;

/// <summary><c>tokenize</c>: the token ids and pieces of a text (needs only the tokenizer, so no weights help).</summary>
internal sealed class TokenizeCommand : Command
{
    private readonly Option<string?> _model = CliOption.Text("--model", "minigpt4.json, a Hugging Face folder, or a tokenizer.model", "PATH", required: true);
    private readonly Option<string?> _text = CliOption.Text("--text", "The text to tokenize", "TEXT", required: true);
    private readonly Option<bool> _noBos = CliOption.Flag("--no-bos", "Do not prepend BOS");
    private readonly Option<OutputFormat?> _format = OutputFormatOption.Create(
        "text prints 'id  piece' lines; json prints {\"ids\": [...], \"pieces\": [...]} [default: text]");

    public TokenizeCommand() : base("tokenize", "Print the token ids and pieces of a text.")
    {
        Options.Add(_model);
        Options.Add(_text);
        Options.Add(_noBos);
        Options.Add(_format);
        SetAction(Run);
    }

    private int Run(ParseResult r)
    {
        var tok = MiniGptTokenizer.Load(r.GetValue(_model)!);
        var ids = tok.Encode(r.GetValue(_text)!, addBos: !r.GetValue(_noBos));
        var pieces = ids.Select(tok.Piece).ToArray();
        if (r.GetValue(_format) == OutputFormat.Json)
            Console.WriteLine(Json.Serialize(new { ids, pieces }));
        else
            for (var i = 0; i < ids.Count; i++) Console.WriteLine($"{ids[i],6}  {pieces[i]}");
        return ExitCodes.Ok;
    }
}
