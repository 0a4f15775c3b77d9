namespace MiniGpt4.Generation;

/// <summary>
/// A generation's text as it grows, from the model's own detokeniser (<paramref name="detokenize"/>, special tokens skipped): each new id decodes a short window of
/// recent ids, and the text past what the window's start already gave is released unless it ends in an
/// unfinished character (U+FFFD). This is the prefix-offset method of transformers' <c>TextStreamer</c>: the
/// window starts where the previous release began, so a leading-space rule applies to both texts alike, and the
/// concatenation of every piece and <see cref="Flush"/> equals <see cref="Abstractions.ILanguageModel.Detokenize"/> of all ids
/// for SentencePiece-style tokenizers. One instance serves one sequence.
/// </summary>
internal sealed class StreamingText(Func<IReadOnlyList<int>, string> detokenize)
{
    private readonly List<int> _ids = new();
    private int _prefix, _read;

    /// <summary>Adds one id and returns the text that became final (possibly empty).</summary>
    public string Append(int id)
    {
        _ids.Add(id);
        var before = Decode(_prefix, _read);
        var text = Decode(_prefix, _ids.Count);
        if (text.Length <= before.Length || text.EndsWith('\uFFFD')) return "";
        _prefix = _read;
        _read = _ids.Count;
        return text[before.Length..];
    }

    /// <summary>Ends the sequence and returns the text still held back.</summary>
    public string Flush()
    {
        var before = Decode(_prefix, _read);
        var text = Decode(_prefix, _ids.Count);
        _prefix = _read = _ids.Count;
        return text.Length > before.Length ? text[before.Length..] : "";
    }

    private string Decode(int from, int to) => from == to ? "" : detokenize(_ids.GetRange(from, to - from));
}
