using System.Text;
using MiniGpt4.Tests.Support;
using MiniGpt4.Text;
using Xunit;

namespace MiniGpt4.Tests.Text;

/// <summary>
/// SentencePiece BPE rules on small hand-written <c>ModelProto</c>s, for the parts the real vocabularies
/// do not reach: merge order by score and leftmost on ties, user-defined pieces kept whole, unknown
/// characters without byte fallback, unused pieces, extra-whitespace removal, and refused model kinds.
/// </summary>
public sealed class SyntheticModelTests
{
    private sealed class ProtoWriter
    {
        private readonly MemoryStream _s = new();
        public byte[] ToArray() => _s.ToArray();
        public ProtoWriter Varint(ulong v) { while (v >= 0x80) { _s.WriteByte((byte)(v | 0x80)); v >>= 7; } _s.WriteByte((byte)v); return this; }
        public ProtoWriter Tag(int field, int wire) => Varint((ulong)(field << 3 | wire));
        public ProtoWriter Bytes(int field, byte[] b) { Tag(field, 2).Varint((ulong)b.Length); _s.Write(b); return this; }
        public ProtoWriter String(int field, string s) => Bytes(field, Encoding.UTF8.GetBytes(s));
        public ProtoWriter Bool(int field, bool b) => Tag(field, 0).Varint(b ? 1UL : 0UL);
        public ProtoWriter Int(int field, int v) => Tag(field, 0).Varint((ulong)v);
        public ProtoWriter Float(int field, float f) { Tag(field, 5); _s.Write(BitConverter.GetBytes(f)); return this; }
    }

    /// <summary>Writes the model into <paramref name="dir"/> and returns its path.</summary>
    private static string Write(TempDir dir, IEnumerable<(string Piece, float Score, int Type)> pieces, bool byteFallback = false,
        bool removeExtraWhitespaces = false, int modelType = 2, byte[]? charsMap = null)
    {
        var w = new ProtoWriter();
        foreach (var (piece, score, type) in pieces)
            w.Bytes(1, new ProtoWriter().String(1, piece).Float(2, score).Int(3, type).ToArray());
        w.Bytes(2, new ProtoWriter().Int(3, modelType).Bool(35, byteFallback).ToArray());
        var norm = new ProtoWriter().String(1, "identity").Bool(3, true).Bool(4, removeExtraWhitespaces);
        if (charsMap is not null) norm.Bytes(2, charsMap);
        w.Bytes(3, norm.ToArray());
        string path = dir.File($"spm-{Guid.NewGuid():N}.model");
        File.WriteAllBytes(path, w.ToArray());
        return path;
    }

    private static LlamaTextTokenizer Load(IEnumerable<(string, float, int)> pieces, bool byteFallback = false, bool removeExtra = false)
    {
        using var dir = new TempDir();
        return LlamaTextTokenizer.FromFile(Write(dir, pieces, byteFallback, removeExtra));
    }

    private static readonly (string, float, int)[] Specials = { ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3) };

    private static string[] Pieces(LlamaTextTokenizer tok, string text) => tok.Encode(text, addBos: false).Select(tok.IdToPiece).ToArray();

    [Fact]
    public void Highest_score_merges_first_and_ties_go_to_the_leftmost_pair()
    {
        var chars = new[] { ("▁", -10f, 1), ("a", -10f, 1), ("b", -10f, 1), ("c", -10f, 1) };
        var abFirst = Load(Specials.Concat(chars).Append(("▁a", -5f, 1)).Append(("ab", -1f, 1)).Append(("bc", -2f, 1)));
        Assert.Equal(new[] { "▁", "ab", "c" }, Pieces(abFirst, "abc"));
        var bcFirst = Load(Specials.Concat(chars).Append(("▁a", -5f, 1)).Append(("ab", -3f, 1)).Append(("bc", -2f, 1)));
        Assert.Equal(new[] { "▁a", "bc" }, Pieces(bcFirst, "abc"));
        var tie = Load(Specials.Concat(chars).Append(("aa", -1f, 1)));
        Assert.Equal(new[] { "▁", "aa", "a" }, Pieces(tie, "aaa"));
        Assert.Equal(new[] { "▁", "aa", "aa" }, Pieces(tie, "aaaa"));
    }

    [Fact]
    public void User_defined_pieces_stay_whole_and_unknown_chars_become_unk_without_byte_fallback()
    {
        var tok = Load(Specials.Concat(new[] { ("▁", -10f, 1), ("a", -10f, 1), ("b", -10f, 1), ("▁a", -1f, 1), ("ab", -0.5f, 1), ("[x]", 0f, 4) }));
        Assert.Equal(new[] { "▁a", "[x]", "b" }, Pieces(tok, "a[x]b"));
        Assert.Equal(new[] { "▁", "ab", "<unk>", "a" }, Pieces(tok, "ab☕a"));
        var ids = tok.Encode("ab☕a", false);
        Assert.Equal("aba", tok.Decode(ids));
        Assert.Equal(" ab<unk>a", tok.Decode(ids, skipSpecialTokens: false));
    }

    [Fact]
    public void Unused_pieces_are_split_back_into_the_pieces_that_formed_them()
    {
        var tok = Load(Specials.Concat(new[] { ("▁", -10f, 1), ("a", -10f, 1), ("b", -10f, 1), ("c", -10f, 1), ("ab", -1f, 1), ("abc", -0.5f, 5) }));
        Assert.Equal(new[] { "▁", "ab", "c" }, Pieces(tok, "abc"));
    }

    [Fact]
    public void Extra_whitespace_is_removed_when_the_model_says_so()
    {
        var pieces = Specials.Concat(new[] { ("▁", -10f, 1), ("a", -10f, 1), ("b", -10f, 1) });
        var keep = Load(pieces);
        Assert.Equal(new[] { "▁", "▁", "▁", "a", "▁", "▁", "b", "▁" }, Pieces(keep, "  a  b "));
        var remove = Load(pieces, removeExtra: true);
        Assert.Equal(new[] { "▁", "a", "▁", "b" }, Pieces(remove, "  a  b "));
        Assert.Empty(remove.Encode("   ", addBos: false));
        Assert.Equal(new[] { "▁", "a" }, Pieces(remove, " a ▁ ")); // a trailing U+2581 goes as well, as in SentencePiece
        Assert.Equal("a b", remove.Decode(remove.Encode("  a  b ", false)));
    }

    [Fact]
    public void Unsupported_models_are_refused()
    {
        using var dir = new TempDir();
        foreach (var (modelType, charsMap) in new[] { (1, (byte[]?)null), (2, new byte[] { 1, 2, 3 }) })
        {
            string path = Write(dir, Specials, modelType: modelType, charsMap: charsMap);
            Assert.Throws<MiniGptConfigurationException>(() => LlamaTextTokenizer.FromFile(path));
        }
        string noUnk = Write(dir, new[] { ("<s>", 0f, 3), ("a", 0f, 1) });
        Assert.Throws<MiniGptConfigurationException>(() => LlamaTextTokenizer.FromFile(noUnk));
        string badByte = Write(dir, Specials.Append(("<0xZZ>", 0f, 6)));
        Assert.Throws<MiniGptConfigurationException>(() => LlamaTextTokenizer.FromFile(badByte));
    }
}
