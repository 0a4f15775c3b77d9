using MiniGpt4.Text;

namespace MiniGpt4.Prompting;

/// <summary>
/// The streamed form of the whole of <see cref="AnswerPostProcessor.Process"/>: given the text before the first
/// <c>###</c> as <see cref="AnswerStreamCut"/> sends it, sends only what the final answer will hold: leading
/// whitespace dropped, trailing whitespace and a trailing prefix of <c>Assistant:</c> held back until more text
/// shows what they are, and the text after a complete <c>Assistant:</c> when one comes before anything was sent.
/// The deltas concatenate to the final answer, except when the model writes <c>Assistant:</c> after text was
/// already sent: the reference then keeps only what follows it, and a stream cannot take text back (see docs/chat.md).
/// </summary>
internal sealed class AnswerStreamClean
{
    private const string Role = "Assistant:";
    private readonly System.Text.StringBuilder _cut = new();
    private string _sent = "";
    private bool _diverged;

    /// <summary>False once the model wrote <c>Assistant:</c> after text had been sent.</summary>
    public bool ConcatenatesToAnswer => !_diverged;

    /// <summary>Appends a delta of the cut text; returns the text that may be sent now (possibly empty).</summary>
    public string Push(string cutDelta)
    {
        if (cutDelta.Length == 0) return "";
        _cut.Append(cutDelta);
        var text = _cut.ToString();
        var role = text.LastIndexOf(Role, StringComparison.Ordinal);
        if (role >= 0) text = text[(role + Role.Length)..];
        var hold = 0;
        for (var k = Math.Min(Role.Length - 1, text.Length); k > 0; k--)
            if (text.AsSpan(text.Length - k).SequenceEqual(Role.AsSpan(0, k))) { hold = k; break; }
        return Send(PythonWhitespace.Strip(text[..^hold]));
    }

    /// <summary>At the end, with the final answer (<see cref="AnswerPostProcessor.Process"/> of the whole text): what is still to send.</summary>
    public string Finish(string answer) => Send(answer);

    private string Send(string visible)
    {
        if (_diverged) return "";
        if (!visible.StartsWith(_sent, StringComparison.Ordinal))
        {
            _diverged = true;
            return "";
        }
        var delta = visible[_sent.Length..];
        _sent = visible;
        return delta;
    }
}
