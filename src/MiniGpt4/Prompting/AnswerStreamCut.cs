namespace MiniGpt4.Prompting;

/// <summary>
/// The streamed form of <c>Chat.answer</c>'s <c>split('###')[0]</c>: passes text through until the first
/// <c>###</c>, holding back a trailing <c>#</c> or <c>##</c> that may become one, and never takes back
/// text already sent. Each <see cref="Push"/> scans only the unsent tail.
/// </summary>
internal sealed class AnswerStreamCut
{
    private const string Marker = AnswerPostProcessor.Separator;
    private readonly System.Text.StringBuilder _raw = new();
    private int _sent;
    private bool _cut;

    /// <summary>Everything pushed so far.</summary>
    public string Raw => _raw.ToString();

    /// <summary>Appends a delta; returns the text that may be sent now (possibly empty).</summary>
    public string Push(string delta)
    {
        _raw.Append(delta);
        if (_cut || delta.Length == 0) return "";
        var start = Math.Max(0, _sent - (Marker.Length - 1));
        var tail = _raw.ToString(start, _raw.Length - start);
        var at = tail.IndexOf(Marker, StringComparison.Ordinal);
        int visible;
        if (at >= 0) { _cut = true; visible = start + at; }
        else visible = _raw.Length - (tail.EndsWith("##", StringComparison.Ordinal) ? 2 : tail.EndsWith('#') ? 1 : 0);
        return Take(visible);
    }

    /// <summary>At the end: the held-back <c>#</c>s when no marker came.</summary>
    public string Finish() => _cut ? "" : Take(_raw.Length);

    private string Take(int visible)
    {
        if (visible <= _sent) return "";
        var text = _raw.ToString(_sent, visible - _sent);
        _sent = visible;
        return text;
    }
}
