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
    private readonly StringBuilder _held = new(); // keep-special mode: decoded text of the open chunk
    private SentencePieceDecoder _chunk;          // SentencePiece state of the text between special tokens
    private bool _chunkHasTokens;
    private bool _runOpen;                        // a run of non-added tokens is open (convert_tokens_to_string)
    private int _parts;                           // parts joined with spaces (runs and added tokens)
    private bool _flushed;

    internal IncrementalDetokenizer(LlamaTextTokenizer tokenizer, bool skipSpecialTokens)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        _chunk = new SentencePieceDecoder(tokenizer);
    }

    /// <summary>Adds one id and returns the text that became final (possibly empty).</summary>
    /// <exception cref="ArgumentOutOfRangeException">The id is outside the vocabulary.</exception>
    /// <exception cref="InvalidOperationException">Called after <see cref="Flush"/>.</exception>
    public string Append(int id)
    {
        if (_flushed) throw new InvalidOperationException("The detokenizer was flushed; create a new one for a new sequence.");
        _tokenizer.CheckId(id);
        bool special = _tokenizer.IsSpecialUnchecked(id);
        if (special && _skipSpecialTokens) return "";
        if (_tokenizer.IsAdded(id))
        {
            CloseRun();
            if (_parts++ > 0) _out.Append(' ');
            _out.Append(_tokenizer.AddedText(id));
            return Take();
        }
        if (!_runOpen)
        {
            if (_parts++ > 0) _out.Append(' ');
            _runOpen = true;
            _chunk = new SentencePieceDecoder(_tokenizer);
            _chunkHasTokens = false;
        }
        if (special)
        {
            // convert_tokens_to_string: " " before a chunk that a special token closes, the chunk, the token.
            if (_chunkHasTokens) _out.Append(' ');
            _chunk.Flush(_held);
            _out.Append(_held).Append(_tokenizer.SpecialText(id));
            _held.Clear();
            _chunk = new SentencePieceDecoder(_tokenizer);
            _chunkHasTokens = false;
            return Take();
        }
        _chunkHasTokens = true;
        _chunk.Append(id, _skipSpecialTokens ? _out : _held);
        return Take();
    }

    /// <summary>Ends the sequence and returns the text still held back.</summary>
    public string Flush()
    {
        if (_flushed) return "";
        _flushed = true;
        CloseRun();
        return Take();
    }

    private void CloseRun()
    {
        if (!_runOpen) return;
        _chunk.Flush(_skipSpecialTokens ? _out : _held);
        _out.Append(_held);
        _held.Clear();
        _runOpen = false;
    }

    private string Take()
    {
        if (_out.Length == 0) return "";
        string s = _out.ToString();
        _out.Clear();
        return s;
    }
}
