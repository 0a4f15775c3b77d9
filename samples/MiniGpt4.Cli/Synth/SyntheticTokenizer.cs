using System.Text;

namespace MiniGpt4.Cli.Synth;

/// <summary>
/// A made-up SentencePiece BPE <c>tokenizer.model</c> with LLaMA's layout, for synthesized models when no real
/// tokenizer is given: 32 000 pieces, <c>&lt;unk&gt;</c>, <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c> at 0-2, the 256 byte
/// pieces at 3-258 (byte fallback, so any text encodes), then single characters, <c>#</c> runs, <c>$$</c> (the
/// pad token MiniGPT-4 names) and letter pairs and triples, scored so that longer merges apply. The ids are
/// not LLaMA's: text means nothing to random weights, only the token counts do.
/// </summary>
internal static class SyntheticTokenizer
{
    public const int Pieces = 32000;

    public static byte[] Build()
    {
        var pieces = new List<(string Piece, int Type)> { ("<unk>", 2), ("<s>", 3), ("</s>", 3) };
        for (var b = 0; b < 256; b++) pieces.Add(($"<0x{b:X2}>", 6));
        var normal = new List<string> { "\u2581" };
        for (var c = 33; c < 127; c++) normal.Add(((char)c).ToString());
        normal.AddRange(["##", "###", "$$", "\u2581#", "\u2581##", "\u2581###"]);
        var first = "\u2581abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
        const string letters = "abcdefghijklmnopqrstuvwxyz";
        foreach (var a in first) foreach (var b in letters) normal.Add($"{a}{b}");
        foreach (var a in first) foreach (var b in letters) foreach (var c in letters) normal.Add($"{a}{b}{c}");
        var seen = new HashSet<string>(pieces.Select(p => p.Piece));
        foreach (var n in normal)
        {
            if (pieces.Count == Pieces) break;
            if (seen.Add(n)) pieces.Add((n, 1));
        }

        var model = new MemoryStream();
        for (var i = 0; i < pieces.Count; i++)
        {
            var (piece, type) = pieces[i];
            var entry = new MemoryStream();
            Bytes(entry, 1, Encoding.UTF8.GetBytes(piece));
            Tag(entry, 2, 5);
            entry.Write(BitConverter.GetBytes(type == 1 ? -(float)(i - 259) : 0f)); // longer (later) merges score lower, as in a trained model
            Varint(entry, 3, (ulong)type);
            Bytes(model, 1, entry.ToArray());
        }
        var trainer = new MemoryStream();
        Varint(trainer, 3, 2);                  // model_type: BPE
        Varint(trainer, 4, Pieces);             // vocab_size
        Varint(trainer, 35, 1);                 // byte_fallback
        Bytes(model, 2, trainer.ToArray());
        var normalizer = new MemoryStream();
        Bytes(normalizer, 1, "identity"u8.ToArray());
        Varint(normalizer, 3, 1);               // add_dummy_prefix
        Varint(normalizer, 4, 0);               // remove_extra_whitespaces
        Varint(normalizer, 5, 1);               // escape_whitespaces
        Bytes(model, 3, normalizer.ToArray());
        return model.ToArray();
    }

    private static void Tag(Stream s, int field, int wire) => RawVarint(s, (ulong)(field << 3 | wire));

    private static void Varint(Stream s, int field, ulong value)
    {
        Tag(s, field, 0);
        RawVarint(s, value);
    }

    private static void Bytes(Stream s, int field, byte[] value)
    {
        Tag(s, field, 2);
        RawVarint(s, (ulong)value.Length);
        s.Write(value);
    }

    private static void RawVarint(Stream s, ulong v)
    {
        for (; v >= 0x80; v >>= 7) s.WriteByte((byte)(v | 0x80));
        s.WriteByte((byte)v);
    }
}
