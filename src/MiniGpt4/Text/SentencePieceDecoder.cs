using System.Text;

namespace MiniGpt4.Text;

/// <summary>
/// Streaming form of SentencePiece's <c>Decode</c> for one run of pieces: U+2581 becomes a space, the
/// leading U+2581 of the first visible piece is dropped (dummy prefix), control pieces are invisible,
/// and byte pieces <c>&lt;0xNN&gt;</c> are joined into UTF-8 where each byte of an invalid sequence
/// becomes its own U+FFFD (SentencePiece's <c>DecodeUTF8</c>, not .NET's maximal-subpart rule). Output
/// is produced as soon as it is decided; at most three bytes of an unfinished character are held.
/// </summary>
internal struct SentencePieceDecoder
{
    private const char Replacement = '\uFFFD';

    private readonly LlamaTextTokenizer _vocab;
    private bool _isBosWs;
    private bool _bosWsSeen;
    private bool _textNonEmpty;
    private int _pendingCount;
    private uint _pending; // undecided bytes (at most 3 between calls, 4 while deciding), first byte in the low 8 bits

    public SentencePieceDecoder(LlamaTextTokenizer vocab)
    {
        _vocab = vocab;
        _isBosWs = true;
        _bosWsSeen = false;
        _textNonEmpty = false;
        _pendingCount = 0;
        _pending = 0;
    }

    /// <summary>Decodes one piece id, appending what is decided to <paramref name="output"/>.</summary>
    public void Append(int id, StringBuilder output)
    {
        var kind = _vocab.KindOf(id);
        if (kind == PieceType.Byte)
        {
            AddByte(_vocab.ByteOf(id), output);
            return;
        }
        DrainBytes(output, final: true);
        if (_bosWsSeen || _textNonEmpty) _isBosWs = false;
        string text;
        switch (kind)
        {
            case PieceType.Control:
                text = "";
                _bosWsSeen = false;
                break;
            case PieceType.Unknown:
                text = _vocab.UnknownSurface(id);
                _bosWsSeen = false;
                break;
            default:
                bool strip = _isBosWs && _vocab.StripsLeadingSpace && _vocab.StartsWithSpaceSymbol(id);
                text = strip ? _vocab.SurfaceWithoutLeadingSpace(id) : _vocab.Surface(id);
                _bosWsSeen = strip && !_vocab.RemovesExtraWhitespaces;
                break;
        }
        Emit(text, output);
    }

    /// <summary>Ends the run: bytes of an unfinished character become U+FFFD each.</summary>
    public void Flush(StringBuilder output) => DrainBytes(output, final: true);

    private void AddByte(byte b, StringBuilder output)
    {
        _pending |= (uint)b << (8 * _pendingCount);
        _pendingCount++;
        DrainBytes(output, final: false);
    }

    private byte Pending(int i) => (byte)(_pending >> (8 * i));

    private void Consume(int n)
    {
        _pending = n >= 4 ? 0 : _pending >> (8 * n);
        _pendingCount -= n;
    }

    private void DrainBytes(StringBuilder output, bool final)
    {
        while (_pendingCount > 0)
        {
            byte b0 = Pending(0);
            int need = b0 < 0x80 ? 1 : (b0 & 0xE0) == 0xC0 ? 2 : (b0 & 0xF0) == 0xE0 ? 3 : (b0 & 0xF8) == 0xF0 ? 4 : 0;
            if (need == 0) { EmitChar(Replacement, output); Consume(1); continue; }
            if (_pendingCount < need)
            {
                bool trailsSoFar = true;
                for (int i = 1; i < _pendingCount; i++) trailsSoFar &= IsTrail(Pending(i));
                if (final || !trailsSoFar) { EmitChar(Replacement, output); Consume(1); continue; }
                return; // wait for more bytes
            }
            int cp = DecodeOne(need);
            if (cp < 0) { EmitChar(Replacement, output); Consume(1); continue; }
            if (cp < 0x10000) EmitChar((char)cp, output);
            else Emit(char.ConvertFromUtf32(cp), output);
            Consume(need);
        }
    }

    // Decodes the first `need` pending bytes (need <= 4, all present) as SentencePiece's DecodeUTF8; -1 when invalid.
    private int DecodeOne(int need)
    {
        byte b0 = Pending(0);
        switch (need)
        {
            case 1: return b0;
            case 2:
            {
                byte b1 = Pending(1);
                int cp = ((b0 & 0x1F) << 6) | (b1 & 0x3F);
                return IsTrail(b1) && cp >= 0x80 && IsValidCodepoint(cp) ? cp : -1;
            }
            case 3:
            {
                byte b1 = Pending(1), b2 = Pending(2);
                int cp = ((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F);
                return IsTrail(b1) && IsTrail(b2) && cp >= 0x800 && IsValidCodepoint(cp) ? cp : -1;
            }
            default:
            {
                byte b1 = Pending(1), b2 = Pending(2), b3 = Pending(3);
                int cp = ((b0 & 0x07) << 18) | ((b1 & 0x3F) << 12) | ((b2 & 0x3F) << 6) | (b3 & 0x3F);
                return IsTrail(b1) && IsTrail(b2) && IsTrail(b3) && cp >= 0x10000 && IsValidCodepoint(cp) ? cp : -1;
            }
        }
    }

    private static bool IsTrail(byte b) => (b & 0xC0) == 0x80;

    private static bool IsValidCodepoint(int cp) => cp < 0xD800 || (cp >= 0xE000 && cp <= 0x10FFFF);

    private void Emit(string text, StringBuilder output)
    {
        if (text.Length == 0) return;
        output.Append(text);
        _textNonEmpty = true;
    }

    private void EmitChar(char c, StringBuilder output)
    {
        output.Append(c);
        _textNonEmpty = true;
    }
}
