using System.Text;

namespace MiniGpt4.Text;

/// <summary>
/// The LLaMA/Vicuna tokenizer exactly as MiniGPT-4's reference uses it: transformers 4.30's slow
/// <c>LlamaTokenizer</c> ("legacy" behaviour) over a SentencePiece BPE <c>tokenizer.model</c>.
/// <list type="bullet">
/// <item>Encode: the literal strings <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c> and <c>&lt;unk&gt;</c> in the text are split
/// out as their ids (no whitespace stripped around them); every other piece of text is encoded on its
/// own by SentencePiece, so each gets the dummy-prefix <c>▁</c> (also right after <c>&lt;s&gt;</c>); BOS is
/// prepended only when asked, EOS never. The pad token is not split out (transformers assigns it after
/// loading, so it is not a no-split token).</item>
/// <item>Decode: SentencePiece decoding (byte pieces to UTF-8, one U+FFFD per invalid byte, the leading
/// space of the first piece dropped); <c>skipSpecialTokens</c> drops BOS, EOS, <c>&lt;unk&gt;</c> and the pad
/// token's id. Keeping them reproduces transformers 4.30's <c>convert_tokens_to_string</c>: a special
/// token is written literally and a space is put in front of a non-empty text run that a special
/// token closes.</item>
/// </list>
/// The vocabulary and the BPE merges are read from the model file itself (pieces, scores, types), not
/// from Microsoft.ML.Tokenizers, whose BPE does not reproduce SentencePiece's merge order for runs such
/// as <c>###</c>. Instances are immutable and safe for concurrent <see cref="Encode"/>/<see cref="Decode"/>.
/// </summary>
internal sealed class LlamaTextTokenizer
{
    private const char SpaceSymbol = '\u2581';

    private readonly SentencePieceModel _model;
    private readonly SentencePieceBpe _bpe;
    private readonly Dictionary<string, int> _pieceToId;
    private readonly (string Text, int Id)[] _splitTokens; // longest first
    private readonly bool[] _special;
    private readonly string[] _surface;                    // piece with ▁ -> ' '
    private readonly bool[] _startsWithSpace;
    private readonly byte[] _byteValue;                    // for byte pieces

    private LlamaTextTokenizer(SentencePieceModel model, string? padToken)
    {
        _model = model;
        int n = model.Pieces.Count;
        _pieceToId = new Dictionary<string, int>(n, StringComparer.Ordinal);
        int unk = -1;
        for (int i = 0; i < n; i++)
        {
            _pieceToId.TryAdd(model.Pieces[i].Piece, i);
            if (unk < 0 && model.Pieces[i].Type == PieceType.Unknown) unk = i;
        }
        if (unk < 0) throw new MiniGptConfigurationException("The tokenizer model has no <unk> piece.");
        UnkId = unk;
        BosId = PieceToId("<s>");
        EosId = PieceToId("</s>");
        PadId = padToken is null ? null : PieceToId(padToken);
        _bpe = new SentencePieceBpe(model, unk);

        _splitTokens = new[] { ("<unk>", UnkId), ("</s>", EosId), ("<s>", BosId) }; // transformers' no-split tokens
        _special = new bool[n];
        _special[UnkId] = _special[BosId] = _special[EosId] = true;
        if (PadId is int pad) _special[pad] = true;

        _surface = new string[n];
        _startsWithSpace = new bool[n];
        _byteValue = new byte[n];
        for (int i = 0; i < n; i++)
        {
            string p = model.Pieces[i].Piece;
            _surface[i] = p.Replace(SpaceSymbol, ' ');
            _startsWithSpace[i] = p[0] == SpaceSymbol;
            if (model.Pieces[i].Type == PieceType.Byte && !SentencePieceBpe.TryParseBytePiece(p, out _byteValue[i]))
                throw new MiniGptConfigurationException($"Byte piece {i} '{p}' is not of the form <0xNN>.");
        }
    }

    /// <summary>
    /// Loads a SentencePiece <c>tokenizer.model</c>. <paramref name="padToken"/> is the pad token string as
    /// MiniGPT-4 assigns it (<c>"$$"</c>); its id is the piece's id, or <see cref="UnkId"/> when the vocabulary
    /// lacks it (transformers' <c>convert_tokens_to_ids</c>).
    /// </summary>
    /// <exception cref="MiniGptConfigurationException">The file is missing, unreadable, not a SentencePiece model, or uses a feature this tokenizer does not implement.</exception>
    public static LlamaTextTokenizer FromFile(string tokenizerModelPath, string? padToken = null)
    {
        var model = SentencePieceModel.Load(tokenizerModelPath);
        string? problem =
            model.ModelType != SentencePieceModel.ModelTypeBpe ? $"model type {model.ModelType} (only BPE, type 2, is supported)"
            : model.HasPrecompiledCharsMap ? $"normalizer '{model.NormalizerName}' with a character map (only identity normalization is supported)"
            : model.TreatWhitespaceAsSuffix ? "treat_whitespace_as_suffix" : null;
        if (problem is not null)
            throw new MiniGptConfigurationException($"The tokenizer model '{tokenizerModelPath}' uses {problem}.");
        return new LlamaTextTokenizer(model, padToken);
    }

    /// <summary>Id of <c>&lt;s&gt;</c>.</summary>
    public int BosId { get; }

    /// <summary>Id of <c>&lt;/s&gt;</c>.</summary>
    public int EosId { get; }

    /// <summary>Id of <c>&lt;unk&gt;</c>.</summary>
    public int UnkId { get; }

    /// <summary>Id of the pad token when one was given (the unknown id when the vocabulary lacks it).</summary>
    public int? PadId { get; }

    /// <summary>Number of pieces in the model (ids are 0..VocabSize-1).</summary>
    public int VocabSize => _model.Pieces.Count;

    /// <summary>transformers 4.30 slow <c>LlamaTokenizer.encode(text, add_special_tokens: addBos)</c>.</summary>
    public IReadOnlyList<int> Encode(string text, bool addBos)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2);
        if (addBos) ids.Add(BosId);
        int chunkStart = 0;
        for (int i = text.IndexOf('<'); i >= 0 && i < text.Length; i = text.IndexOf('<', i))
        {
            int matched = -1;
            foreach (var (token, id) in _splitTokens)
            {
                if (string.CompareOrdinal(text, i, token, 0, token.Length) == 0)
                {
                    if (i > chunkStart) EncodeText(text.Substring(chunkStart, i - chunkStart), ids);
                    ids.Add(id);
                    matched = token.Length;
                    break;
                }
            }
            if (matched < 0) { i++; continue; }
            i += matched;
            chunkStart = i;
        }
        if (chunkStart < text.Length) EncodeText(chunkStart == 0 ? text : text.Substring(chunkStart), ids);
        return ids;
    }

    /// <summary>Plain SentencePiece <c>encode</c> of the whole text: special-token strings are not split out, no BOS.</summary>
    public IReadOnlyList<int> EncodeIgnoringSpecialTokens(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 1);
        EncodeText(text, ids);
        return ids;
    }

    private void EncodeText(string chunk, List<int> ids) => _bpe.EncodeNormalized(_bpe.Normalize(chunk), ids);

    /// <summary>
    /// transformers 4.30 slow <c>LlamaTokenizer.decode(ids, skip_special_tokens)</c> (no clean-up of
    /// tokenization spaces). An id outside the vocabulary throws <see cref="ArgumentOutOfRangeException"/>.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        var sb = new StringBuilder();
        var run = new List<int>();
        bool previousSpecial = false, first = true;
        foreach (int id in ids)
        {
            CheckId(id);
            if (_special[id])
            {
                if (skipSpecialTokens) continue;
                // convert_tokens_to_string: " " before a run that a special token closes, then the run, then the token.
                if (!previousSpecial && !first) sb.Append(' ');
                DecodeRun(run, sb);
                run.Clear();
                sb.Append(_model.Pieces[id].Piece);
                previousSpecial = true;
            }
            else
            {
                run.Add(id);
                previousSpecial = false;
            }
            first = false;
        }
        DecodeRun(run, sb);
        return sb.ToString();
    }

    /// <summary>SentencePiece <c>DecodeIds</c> of one run of ids (batch form of <see cref="SentencePieceDecoder"/>).</summary>
    private void DecodeRun(List<int> run, StringBuilder sb)
    {
        int textStart = sb.Length;
        bool isBosWs = true, bosWsSeen = false;
        var bytes = new List<byte>();
        foreach (int id in run)
        {
            var type = KindOf(id);
            if (type == PieceType.Byte) { bytes.Add(ByteOf(id)); continue; }
            AppendBytes(bytes, sb);
            if (bosWsSeen || sb.Length > textStart) isBosWs = false;
            switch (type)
            {
                case PieceType.Control: bosWsSeen = false; break;
                case PieceType.Unknown: sb.Append(UnknownSurface(id)); bosWsSeen = false; break;
                default:
                    bosWsSeen = isBosWs && StripsLeadingSpace && _startsWithSpace[id];
                    sb.Append(bosWsSeen ? SurfaceWithoutLeadingSpace(id) : _surface[id]);
                    if (RemovesExtraWhitespaces) bosWsSeen = false;
                    break;
            }
        }
        AppendBytes(bytes, sb);
    }

    // SentencePiece's ProcessBytePieces: one character at a time; an invalid lead consumes one byte as U+FFFD.
    private static void AppendBytes(List<byte> bytes, StringBuilder sb)
    {
        int offset = 0;
        while (offset < bytes.Count)
        {
            int len = bytes.Count - offset;
            byte b0 = bytes[offset];
            int cp = -1, consumed = 1;
            static bool T(byte b) => (b & 0xC0) == 0x80;
            static bool Valid(int c) => c < 0xD800 || (c >= 0xE000 && c <= 0x10FFFF);
            if (b0 < 0x80) cp = b0;
            else if (len >= 2 && (b0 & 0xE0) == 0xC0)
            {
                int c = ((b0 & 0x1F) << 6) | (bytes[offset + 1] & 0x3F);
                if (T(bytes[offset + 1]) && c >= 0x80 && Valid(c)) { cp = c; consumed = 2; }
            }
            else if (len >= 3 && (b0 & 0xF0) == 0xE0)
            {
                int c = ((b0 & 0x0F) << 12) | ((bytes[offset + 1] & 0x3F) << 6) | (bytes[offset + 2] & 0x3F);
                if (T(bytes[offset + 1]) && T(bytes[offset + 2]) && c >= 0x800 && Valid(c)) { cp = c; consumed = 3; }
            }
            else if (len >= 4 && (b0 & 0xF8) == 0xF0)
            {
                int c = ((b0 & 0x07) << 18) | ((bytes[offset + 1] & 0x3F) << 12) | ((bytes[offset + 2] & 0x3F) << 6) | (bytes[offset + 3] & 0x3F);
                if (T(bytes[offset + 1]) && T(bytes[offset + 2]) && T(bytes[offset + 3]) && c >= 0x10000 && Valid(c)) { cp = c; consumed = 4; }
            }
            if (cp < 0) sb.Append('\uFFFD');
            else if (cp < 0x10000) sb.Append((char)cp);
            else sb.Append(char.ConvertFromUtf32(cp));
            offset += consumed;
        }
        bytes.Clear();
    }

    /// <summary>The piece string of <paramref name="id"/> (e.g. <c>▁Hello</c>, <c>&lt;0x0A&gt;</c>, <c>&lt;s&gt;</c>).</summary>
    public string IdToPiece(int id)
    {
        CheckId(id);
        return _model.Pieces[id].Piece;
    }

    /// <summary>SentencePiece <c>piece_to_id</c>: the id of <paramref name="piece"/>, or <see cref="UnkId"/> when absent.</summary>
    public int PieceToId(string piece)
    {
        ArgumentNullException.ThrowIfNull(piece);
        return _pieceToId.TryGetValue(piece, out int id) ? id : UnkId;
    }

    /// <summary>Whether <see cref="Decode"/> with <c>skipSpecialTokens</c> drops <paramref name="id"/> (BOS, EOS, unk, pad).</summary>
    public bool IsSpecial(int id)
    {
        CheckId(id);
        return _special[id];
    }

    /// <summary>A streaming decoder whose concatenated outputs equal <see cref="Decode"/> of all ids appended.</summary>
    public IncrementalDetokenizer CreateDetokenizer(bool skipSpecialTokens = true) => new(this, skipSpecialTokens);

    internal void CheckId(int id)
    {
        if ((uint)id >= (uint)_model.Pieces.Count)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is outside the vocabulary (0..{_model.Pieces.Count - 1}).");
    }

    internal PieceType KindOf(int id) => _model.Pieces[id].Type;

    internal byte ByteOf(int id) => _byteValue[id];

    internal bool IsSpecialUnchecked(int id) => _special[id];

    internal string SpecialText(int id) => _model.Pieces[id].Piece;

    internal string Surface(int id) => _surface[id];

    internal string SurfaceWithoutLeadingSpace(int id) => _surface[id].Substring(1);

    internal bool StartsWithSpaceSymbol(int id) => _startsWithSpace[id];

    internal string UnknownSurface(int id) => _model.UnknownSurface;

    internal bool StripsLeadingSpace => _model.AddDummyPrefix || _model.RemoveExtraWhitespaces;

    internal bool RemovesExtraWhitespaces => _model.RemoveExtraWhitespaces;
}
