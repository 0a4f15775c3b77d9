using System.Text;

namespace MiniGpt4.Text;

/// <summary>
/// Turns generated ids into text as they arrive, for streaming. Whatever the split, the concatenation
/// of every <see cref="Append"/> result and the final <see cref="Flush"/> equals
/// <see cref="LlamaTextTokenizer.Decode"/> of all the ids. O(1) per token. Text is held back only while
/// it is undecided: the bytes of an unfinished UTF-8 character (at most three), and, when special tokens
/// are kept, the text after the last special token (transformers 4.30 puts a space in front of a text
/// run that a later special token closes, so that run is released at the next special token or at
/// <see cref="Flush"/>). One instance serves one sequence and is not thread-safe.
/// </summary>
internal sealed class IncrementalDetokenizer
{
    private readonly LlamaTextTokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly StringBuilder _out = new();
    private readonly StringBuilder _heldRun = new(); // keep-special mode: decoded text of the open run
    private SentencePieceDecoder _run;
    private bool _runHasTokens;
    private bool _flushed;

    internal IncrementalDetokenizer(LlamaTextTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        _run = new SentencePieceDecoder(tokenizer);
    }

    /// <summary>Adds one id and returns the text that became final (possibly empty).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside the vocabulary.</exception>
    /// <exception cref="InvalidOperationException">Called after <see cref="Flush"/>.</exception>
    public string Append(int id)
    {
        if (_flushed) throw new InvalidOperationException("The detokenizer was flushed; create a new one for a new sequence.");
        _tokenizer.CheckId(id);
        if (_tokenizer.IsSpecialUnchecked(id))
        {
            if (_skipSpecialTokens) return "";
            if (_runHasTokens) _out.Append(' ');
            _run.Flush(_heldRun);
            _out.Append(_heldRun).Append(_tokenizer.SpecialText(id));
            _heldRun.Clear();
            _run = new SentencePieceDecoder(_tokenizer);
            _runHasTokens = false;
            return Take();
        }
        _runHasTokens = true;
        _run.Append(id, _skipSpecialTokens ? _out : _heldRun);
        return Take();
    }

    /// <summary>Ends the sequence and returns the text still held back.</summary>
    public string Flush()
    {
        if (_flushed) return "";
        _flushed = true;
        _run.Flush(_skipSpecialTokens ? _out : _heldRun);
        _out.Append(_heldRun);
        _heldRun.Clear();
        return Take();
    }

    private string Take()
    {
        if (_out.Length == 0) return "";
        string s = _out.ToString();
        _out.Clear();
        return s;
    }
}
