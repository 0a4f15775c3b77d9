using System.Text;

namespace MiniGpt4.Text;

/// <summary>
/// SentencePiece's BPE encoder (<c>bpe_model.cc</c>) over a model's pieces and scores: the text is normalised (dummy
/// prefix, spaces to U+2581), split into code points (user-defined pieces kept whole), then adjacent symbols are
/// merged, always the pair whose merged piece has the highest score first and the leftmost pair on ties, until no
/// adjacent pair forms a piece. Symbols that are not pieces become their UTF-8 bytes (byte fallback) or the unknown id.
/// O(n log n) per call through a priority queue; the instance is immutable and safe for concurrent use.
/// </summary>
internal sealed class SentencePieceBpe
{
    private readonly SentencePieceModel _model;
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _pieces; // NORMAL, USER_DEFINED, UNUSED
    private readonly int _maxUserDefinedLength;
    private readonly int[] _byteIds = new int[256];
    private readonly int _unkId;

    private static readonly Comparer<(float Score, int Left)> AgendaOrder = Comparer<(float Score, int Left)>.Create(
        static (a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : a.Left.CompareTo(b.Left));

    public SentencePieceBpe(SentencePieceModel model, int unkId)
    {
        _model = model;
        _unkId = unkId;
        var pieces = new Dictionary<string, int>(StringComparer.Ordinal);
        Array.Fill(_byteIds, -1);
        for (int i = 0; i < model.Pieces.Count; i++)
        {
            var p = model.Pieces[i];
            if (p.Type == PieceType.Byte) _byteIds[p.ByteValue] = i;
            else if (p.Type is PieceType.Normal or PieceType.UserDefined or PieceType.Unused) pieces.TryAdd(p.Piece, i);
            if (p.Type == PieceType.UserDefined) _maxUserDefinedLength = Math.Max(_maxUserDefinedLength, p.Piece.Length);
        }
        _pieces = pieces.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>SentencePiece's normaliser without a character map (LLaMA's <c>identity</c>).</summary>
    public string Normalize(string text)
    {
        bool removeExtra = _model.RemoveExtraWhitespaces;
        if (removeExtra) text = string.Join(' ', text.Split(' ', StringSplitOptions.RemoveEmptyEntries));
        if (text.Length == 0) return "";
        if (_model.AddDummyPrefix) text = " " + text;
        char space = _model.EscapeWhitespaces ? SentencePieceModel.SpaceSymbol : ' ';
        text = text.Replace(' ', space);
        return removeExtra ? text.TrimEnd(space) : text;
    }

    private struct Symbol
    {
        public int Start, Length, Prev, Next;
        public bool Freeze;
    }

    public void EncodeNormalized(string normalized, List<int> output)
    {
        if (normalized.Length == 0) return;

        // Split into symbols: user-defined pieces (longest match, frozen) or single code points.
        var symbols = new List<Symbol>(normalized.Length);
        for (int pos = 0; pos < normalized.Length;)
        {
            int len = UserDefinedLength(normalized, pos);
            bool freeze = len > 0;
            if (!freeze) len = char.IsSurrogatePair(normalized, pos) ? 2 : 1;
            int index = symbols.Count;
            symbols.Add(new Symbol { Start = pos, Length = len, Prev = index - 1, Next = pos + len < normalized.Length ? index + 1 : -1, Freeze = freeze });
            pos += len;
        }

        var syms = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(symbols);
        var agenda = new PriorityQueue<(int Left, int Right, int Size), (float Score, int Left)>(symbols.Count, AgendaOrder);
        Dictionary<string, (string Left, string Right)>? revMerge = null;

        void MaybeAdd(Span<Symbol> s, int left, int right)
        {
            if (left < 0 || right < 0 || s[left].Freeze || s[right].Freeze) return;
            int size = s[left].Length + s[right].Length;
            var merged = normalized.AsSpan(s[left].Start, size);
            if (!_pieces.TryGetValue(merged, out int id)) return;
            agenda.Enqueue((left, right, size), (_model.Pieces[id].Score, left));
            if (IsUnused(id))
            {
                revMerge ??= new Dictionary<string, (string, string)>(StringComparer.Ordinal);
                revMerge[merged.ToString()] = (normalized.Substring(s[left].Start, s[left].Length), normalized.Substring(s[right].Start, s[right].Length));
            }
        }

        for (int i = 1; i < syms.Length; i++) MaybeAdd(syms, i - 1, i);

        while (agenda.TryDequeue(out var top, out _))
        {
            ref var l = ref syms[top.Left];
            ref var r = ref syms[top.Right];
            if (l.Length == 0 || r.Length == 0 || l.Length + r.Length != top.Size) continue; // stale pair
            l.Length += r.Length;
            l.Next = r.Next;
            if (r.Next >= 0) syms[r.Next].Prev = top.Left;
            r.Length = 0;
            MaybeAdd(syms, l.Prev, top.Left);
            MaybeAdd(syms, top.Left, l.Next);
        }

        for (int i = 0; i >= 0 && i < syms.Length; i = syms[i].Next)
            Resegment(normalized.AsSpan(syms[i].Start, syms[i].Length), revMerge, output);
    }

    // The length of the longest user-defined piece at pos (0 when none starts there).
    private int UserDefinedLength(string text, int pos)
    {
        for (int l = Math.Min(_maxUserDefinedLength, text.Length - pos); l > 0; l--)
            if (_pieces.TryGetValue(text.AsSpan(pos, l), out int id) && _model.Pieces[id].Type == PieceType.UserDefined) return l;
        return 0;
    }

    private bool IsUnused(int id) => _model.Pieces[id].Type == PieceType.Unused;

    private void Resegment(ReadOnlySpan<char> piece, Dictionary<string, (string Left, string Right)>? revMerge, List<int> output)
    {
        if (_pieces.TryGetValue(piece, out int id))
        {
            if (IsUnused(id) && revMerge is not null && revMerge.TryGetValue(piece.ToString(), out var parts))
            {
                Resegment(parts.Left, revMerge, output);
                Resegment(parts.Right, revMerge, output);
                return;
            }
            output.Add(id);
            return;
        }
        if (!_model.ByteFallback)
        {
            output.Add(_unkId);
            return;
        }
        Span<byte> utf8 = stackalloc byte[8];
        int n = Encoding.UTF8.GetBytes(piece, utf8); // a lone surrogate becomes EF BF BD
        for (int k = 0; k < n; k++)
        {
            int b = _byteIds[utf8[k]];
            output.Add(b >= 0 ? b : _unkId);
        }
    }
}
