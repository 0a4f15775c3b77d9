namespace MiniGpt4.Text;

/// <summary>
/// Turns generated ids into text as they arrive, for streaming. Whatever the split, the concatenation
/// of every <see cref="Append"/> result and the final <see cref="Flush"/> equals
/// <see cref="LlamaTextTokenizer.Decode"/> of all the ids, and text once returned is never revised:
/// trailing U+FFFD (possibly an unfinished UTF-8 character) is held back, and when special tokens are
/// kept everything is held until <see cref="Flush"/> (a later special token can put a space in front of
/// the open text). Decodes the whole sequence per id. One instance serves one sequence and is not thread-safe.
/// </summary>
internal sealed class IncrementalDetokenizer(LlamaTextTokenizer tokenizer, bool skipSpecialTokens)
{
    private readonly List<int> _ids = new();
    private int _sent;
    private bool _flushed;

    /// <summary>Adds one id and returns the text that became final (possibly empty).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside the vocabulary.</exception>
    /// <exception cref="InvalidOperationException">Called after <see cref="Flush"/>.</exception>
    public string Append(int id)
    {
        if (_flushed) throw new InvalidOperationException("The detokenizer was flushed; create a new one for a new sequence.");
        if (tokenizer.IsSpecial(id) && skipSpecialTokens) return "";
        _ids.Add(id);
        if (!skipSpecialTokens) return "";
        string text = tokenizer.Decode(_ids);
        int final = text.Length;
        while (final > _sent && text[final - 1] == '\uFFFD') final--;
        return Take(text, final);
    }

    /// <summary>Ends the sequence and returns the text still held back.</summary>
    public string Flush()
    {
        if (_flushed) return "";
        _flushed = true;
        string text = tokenizer.Decode(_ids, skipSpecialTokens);
        return Take(text, text.Length);
    }

    private string Take(string text, int end)
    {
        string delta = text[_sent..end];
        _sent = end;
        return delta;
    }
}
