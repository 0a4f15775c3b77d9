using System.Buffers;
using System.Runtime.InteropServices;
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
/// loading, so it is not a no-split token). Added tokens (<c>added_tokens.json</c>, e.g. Vicuna v0's <c>[PAD]</c>)
/// are split out too, with the whitespace on both sides stripped.</item>
/// <item>Decode: SentencePiece decoding (byte pieces to UTF-8, one U+FFFD per invalid byte, the leading
/// space of the first piece dropped); <c>skipSpecialTokens</c> drops BOS, EOS, <c>&lt;unk&gt;</c> and the pad
/// token's id. Keeping them reproduces transformers 4.30's <c>convert_tokens_to_string</c>: a special
/// token is written literally and a space is put in front of a non-empty text run that a special
/// token closes. Added tokens are separate parts joined to their neighbours with single spaces
/// (transformers' <c>_decode</c> with <c>spaces_between_special_tokens</c>). No clean-up of tokenization spaces.</item>
/// </list>
/// The vocabulary and the BPE merges are read from the model file itself (pieces, scores, types), not
/// from Microsoft.ML.Tokenizers, whose BPE does not reproduce SentencePiece's merge order for runs such
/// as <c>###</c>. Instances are immutable and safe for concurrent <see cref="Encode"/>/<see cref="Decode"/>.
/// </summary>
internal sealed class LlamaTextTokenizer
{
    private readonly SentencePieceModel _model;
    private readonly SentencePieceBpe _bpe;
    private readonly Dictionary<string, int> _pieceToId;
    private readonly string[] _added;                      // added tokens (ids from _model.Pieces.Count on)
    private readonly (string Text, int Id, bool Strip)[] _splitTokens; // no-split tokens, longest first

    private LlamaTextTokenizer(SentencePieceModel model, string? padToken, IReadOnlyDictionary<string, int>? addedTokens, string source)
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
        if (unk < 0) throw new MiniGptConfigurationException($"The tokenizer model '{source}' has no <unk> piece.");
        UnkId = unk;

        // Added tokens (transformers' added_tokens.json): consecutive ids after the SentencePiece vocabulary.
        var added = new List<string>();
        foreach (var (content, id) in (addedTokens ?? new Dictionary<string, int>()).OrderBy(kv => kv.Value))
        {
            if (string.IsNullOrEmpty(content) || id != n + added.Count || !_pieceToId.TryAdd(content, id))
                throw new MiniGptConfigurationException(
                    $"Added token '{content}' -> {id} of '{source}' is invalid: added tokens must be new, non-empty strings with consecutive ids from {n}.");
            added.Add(content);
        }
        _added = added.ToArray();

        BosId = PieceToId("<s>");
        EosId = PieceToId("</s>");
        PadId = padToken is null ? null : PieceToId(padToken);
        _bpe = new SentencePieceBpe(model, unk);

        // transformers' no-split tokens: bos/eos/unk as AddedToken(lstrip=False, rstrip=False), and the added tokens,
        // which (not being special once MiniGPT-4 reassigns the pad token) strip the whitespace on both sides.
        _splitTokens = new[] { ("<unk>", UnkId, false), ("</s>", EosId, false), ("<s>", BosId, false) }
            .Concat(_added.Select((t, k) => (t, n + k, true)))
            .OrderByDescending(t => t.Item1.Length).ToArray();
    }

    /// <summary>
    /// Loads a SentencePiece <c>tokenizer.model</c>. <paramref name="padToken"/> is the pad token string as MiniGPT-4
    /// assigns it (<c>"$$"</c>); its id is the piece's id, or <see cref="UnkId"/> when the vocabulary lacks it
    /// (transformers' <c>convert_tokens_to_ids</c>). <paramref name="addedTokens"/> are the tokens transformers adds
    /// after the SentencePiece vocabulary (<c>added_tokens.json</c>, e.g. Vicuna v0's <c>[PAD]</c> = 32000).
    /// </summary>
    /// <exception cref="MiniGptConfigurationException">The file is missing, unreadable, not a SentencePiece model, uses a feature this tokenizer does not implement, or the added tokens are inconsistent.</exception>
    public static LlamaTextTokenizer FromFile(string tokenizerModelPath, string? padToken = null, IReadOnlyDictionary<string, int>? addedTokens = null)
    {
        var model = SentencePieceModel.Load(tokenizerModelPath);
        string? problem =
            model.ModelType != SentencePieceModel.ModelTypeBpe ? $"model type {model.ModelType} (only BPE, type 2, is supported)"
            : model.HasPrecompiledCharsMap ? $"normalizer '{model.NormalizerName}' with a character map (only identity normalization is supported)"
            : model.TreatWhitespaceAsSuffix ? "treat_whitespace_as_suffix" : null;
        if (problem is not null)
            throw new MiniGptConfigurationException($"The tokenizer model '{tokenizerModelPath}' uses {problem}.");
        return new LlamaTextTokenizer(model, padToken, addedTokens, tokenizerModelPath);
    }

    /// <summary>
    /// Loads a Hugging Face tokenizer folder: <c>tokenizer.model</c> plus <c>added_tokens.json</c> when present.
    /// </summary>
    /// <exception cref="MiniGptConfigurationException">A file is missing or invalid.</exception>
    public static LlamaTextTokenizer FromDirectory(string folder, string? padToken = null)
    {
        ArgumentNullException.ThrowIfNull(folder);
        string addedPath = Path.Combine(folder, "added_tokens.json");
        Dictionary<string, int>? added = null;
        if (File.Exists(addedPath))
        {
            try { added = System.Text.Json.JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllText(addedPath)); }
            catch (Exception e) when (e is System.Text.Json.JsonException or IOException or UnauthorizedAccessException)
            {
                throw new MiniGptConfigurationException($"Cannot read '{addedPath}' (expected a JSON object of token -> id): {e.Message}", e);
            }
        }
        return FromFile(Path.Combine(folder, "tokenizer.model"), padToken, added);
    }

    public int BosId { get; }

    public int EosId { get; }

    public int UnkId { get; }

    /// <summary>Id of the pad token when one was given (the unknown id when the vocabulary lacks it).</summary>
    public int? PadId { get; }

    /// <summary>Number of ids (transformers' <c>len(tokenizer)</c>): the SentencePiece pieces plus the added tokens; ids are 0..VocabSize-1.</summary>
    public int VocabSize => PieceCount + _added.Length;

    /// <summary>transformers 4.30 slow <c>LlamaTokenizer.encode(text, add_special_tokens: addBos)</c>.</summary>
    public IReadOnlyList<int> Encode(string text, bool addBos)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2);
        if (addBos) ids.Add(BosId);

        // tokens_trie.split: text pieces and no-split tokens (id >= 0), leftmost-longest.
        var parts = new List<(string Text, int Id, bool Strip)>();
        int chunkStart = 0;
        for (int i = 0; i < text.Length;)
        {
            int hit = SplitTokenAt(text, i);
            if (hit < 0) { i++; continue; }
            if (i > chunkStart) parts.Add((text[chunkStart..i], -1, false));
            parts.Add(_splitTokens[hit]);
            i += _splitTokens[hit].Text.Length;
            chunkStart = i;
        }
        if (chunkStart < text.Length) parts.Add((text[chunkStart..], -1, false));

        // Whitespace stripping around no-split tokens that are not AddedToken(lstrip=False, rstrip=False).
        for (int k = 0; k < parts.Count; k++)
        {
            if (!parts[k].Strip) continue;
            if (k + 1 < parts.Count && parts[k + 1].Id < 0) parts[k + 1] = (PythonWhitespace.Strip(parts[k + 1].Text, end: false), -1, false);
            if (k > 0 && parts[k - 1].Id < 0) parts[k - 1] = (PythonWhitespace.Strip(parts[k - 1].Text, start: false), -1, false);
        }

        foreach (var (chunk, id, _) in parts)
        {
            if (id >= 0) ids.Add(id);
            else if (chunk.Length > 0) EncodeText(chunk, ids);
        }
        return ids;
    }

    // The longest no-split token at text[i..], -1 when none starts there.
    private int SplitTokenAt(string text, int i)
        => Array.FindIndex(_splitTokens, t => string.CompareOrdinal(text, i, t.Text, 0, t.Text.Length) == 0);

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
    /// The ids of <paramref name="text"/> as it tokenizes when glued to preceding text: SentencePiece's
    /// encoding without the dummy-prefix space it puts before a text of its own.
    /// </summary>
    public IReadOnlyList<int> EncodeContinuation(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var normalized = _bpe.Normalize(text);
        var ids = new List<int>();
        _bpe.EncodeNormalized(_model.AddDummyPrefix && normalized.Length > 0 ? normalized[1..] : normalized, ids);
        return ids;
    }

    /// <summary>
    /// transformers 4.30 slow <c>LlamaTokenizer.decode(ids, skip_special_tokens)</c> (no clean-up of
    /// tokenization spaces). An id outside the vocabulary throws <see cref="ArgumentOutOfRangeException"/>.
    /// </summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(ids);
        // _decode: added tokens are parts of their own, the runs between them go through
        // convert_tokens_to_string, and the parts are joined with single spaces.
        var parts = new List<string>();
        var run = new List<int>();
        foreach (int id in ids)
        {
            CheckId(id);
            if (skipSpecialTokens && IsSpecialToken(id)) continue;
            if (!IsAdded(id))
            {
                run.Add(id);
                continue;
            }
            if (run.Count > 0) parts.Add(ConvertTokensToString(CollectionsMarshal.AsSpan(run)));
            run.Clear();
            parts.Add(_added[id - PieceCount]);
        }
        if (run.Count > 0) parts.Add(ConvertTokensToString(CollectionsMarshal.AsSpan(run)));
        return string.Join(' ', parts);
    }

    // Special tokens are written literally, with a space in front of a non-empty run of pieces they close.
    private string ConvertTokensToString(ReadOnlySpan<int> ids)
    {
        var text = new StringBuilder();
        int from = 0;
        for (int i = 0; i < ids.Length; i++)
        {
            if (!IsSpecialToken(ids[i])) continue;
            if (i > from) text.Append(' ');
            DecodePieces(ids[from..i], text);
            text.Append(_model.Pieces[ids[i]].Piece);
            from = i + 1;
        }
        DecodePieces(ids[from..], text);
        return text.ToString();
    }

    // SentencePiece's Decode: control pieces are invisible, U+2581 becomes a space, the first piece loses
    // its leading U+2581 (dummy prefix), and runs of byte pieces are decoded as UTF-8.
    private void DecodePieces(ReadOnlySpan<int> ids, StringBuilder text)
    {
        int start = text.Length;
        bool isBosWs = true, bosWsSeen = false;
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            var piece = _model.Pieces[id];
            if (piece.Type == PieceType.Byte)
            {
                bytes.Add(piece.ByteValue);
                continue;
            }
            AppendUtf8(bytes, text);
            if (bosWsSeen || text.Length > start) isBosWs = false;
            bosWsSeen = false;
            if (piece.Type == PieceType.Unknown) text.Append(_model.UnknownSurface);
            else if (piece.Type != PieceType.Control) bosWsSeen = AppendPiece(piece.Piece, isBosWs, text);
        }
        AppendUtf8(bytes, text);
    }

    // Appends a piece with U+2581 as spaces; returns whether it was the leading space that got stripped.
    private bool AppendPiece(string piece, bool isBosWs, StringBuilder text)
    {
        bool strip = isBosWs && (_model.AddDummyPrefix || _model.RemoveExtraWhitespaces) && piece[0] == SentencePieceModel.SpaceSymbol;
        int at = text.Length;
        text.Append(piece, strip ? 1 : 0, strip ? piece.Length - 1 : piece.Length).Replace(SentencePieceModel.SpaceSymbol, ' ', at, text.Length - at);
        return strip && !_model.RemoveExtraWhitespaces;
    }

    // SentencePiece's DecodeUTF8: each byte that does not start a well-formed character becomes one U+FFFD.
    private static void AppendUtf8(List<byte> bytes, StringBuilder text)
    {
        var rest = CollectionsMarshal.AsSpan(bytes);
        while (rest.Length > 0)
        {
            bool ok = Rune.DecodeFromUtf8(rest, out var rune, out int used) == OperationStatus.Done;
            text.Append((ok ? rune : Rune.ReplacementChar).ToString());
            rest = rest[(ok ? used : 1)..];
        }
        bytes.Clear();
    }

    /// <summary>The piece string of <paramref name="id"/> (e.g. <c>▁Hello</c>, <c>&lt;0x0A&gt;</c>, <c>&lt;s&gt;</c>).</summary>
    public string IdToPiece(int id)
    {
        CheckId(id);
        return IsAdded(id) ? _added[id - PieceCount] : _model.Pieces[id].Piece;
    }

    /// <summary>transformers' <c>convert_tokens_to_ids</c>: an added token's id, else SentencePiece <c>piece_to_id</c> (<see cref="UnkId"/> when absent).</summary>
    public int PieceToId(string piece)
    {
        ArgumentNullException.ThrowIfNull(piece);
        return _pieceToId.TryGetValue(piece, out int id) ? id : UnkId;
    }

    /// <summary>Whether <see cref="Decode"/> with <c>skipSpecialTokens</c> drops <paramref name="id"/> (BOS, EOS, unk, pad).</summary>
    public bool IsSpecial(int id)
    {
        CheckId(id);
        return IsSpecialToken(id);
    }

    private void CheckId(int id)
    {
        if ((uint)id >= (uint)VocabSize)
            throw new ArgumentOutOfRangeException(nameof(id), id, $"Token id {id} is outside the vocabulary (0..{VocabSize - 1}).");
    }

    private bool IsSpecialToken(int id) => id == UnkId || id == BosId || id == EosId || id == PadId;

    private int PieceCount => _model.Pieces.Count;

    private bool IsAdded(int id) => id >= PieceCount;
}
