using System.Text;
using System.Text.RegularExpressions;
using MiniGpt4.Abstractions;
using MiniGpt4.Prompting;
using MiniGpt4.SyntheticWorld;

namespace MiniGpt4.Training;

/// <summary>
/// Builds the toy model's SentencePiece BPE <c>tokenizer.model</c> from the text it will see (docs/toy-model.md):
/// <c>&lt;unk&gt;</c>, <c>&lt;s&gt;</c>, <c>&lt;/s&gt;</c> at 0-2, the 256 byte pieces (byte fallback, so any text
/// encodes), <c>▁</c> and the printable ASCII characters, then every word of the text as one piece with the chain of
/// its prefixes (<c>▁t</c>, <c>▁tr</c>, ... <c>▁triangle</c>) so that BPE's merges rebuild each word whatever their
/// order. Words are runs of letters with their leading <c>▁</c>, the template's <c>###</c> and the
/// <c>&lt;Img&gt;</c>/<c>&lt;/Img&gt;</c> tags; punctuation stays one character a piece. The normaliser is LLaMA's
/// (identity, dummy prefix, spaces kept). The file is a real <c>ModelProto</c>: the project's tokenizer and
/// Microsoft.ML.Tokenizers both read it.
/// </summary>
public static partial class ToyTokenizer
{
    /// <summary>The file name in a language model folder.</summary>
    public const string FileName = "tokenizer.model";

    /// <summary>
    /// Every text the toy model reads or writes, as the tokenizer sees it (each prompt segment, answer and caption on its
    /// own): the vicuna0 template's system text and roles, every question and answer of the world's scenes, captions of
    /// one to four objects, the code words and the separator.
    /// </summary>
    public static IReadOnlyList<string> Corpus()
    {
        var texts = new List<string> { string.Join(" ", SceneCode.Vocabulary), AnswerPostProcessorSeparator };
        var template = ConversationTemplate.Vicuna0;
        var conversation = new Conversation();
        conversation.AddImage();
        foreach (var q in new[] { QuestionGenerator.CountQuestion, QuestionGenerator.DescribeQuestion }
            .Concat(Palette.Shapes.Select(QuestionGenerator.ColourQuestion)).Concat(Palette.Colours.Select(QuestionGenerator.ShapeQuestion)))
        {
            var c = new Conversation();
            c.AddImage();
            c.Ask(q);
            texts.AddRange(ConversationTemplate.SplitAtImages(template.Render(c.Messages, out var offsets), offsets));
        }
        // Scenes enough to meet every number, colour, shape, plural and background in answers and captions.
        for (var i = 0; i < 2000; i++)
        {
            var scene = SceneGenerator.Generate(seed: 0x746F79, index: i);
            texts.Add(QuestionGenerator.Caption(scene) + ExampleLayout.Stage1EndSymbol);
            texts.AddRange(QuestionGenerator.All(scene).Select(q => q.Answer + ExampleLayout.Stage2EndSymbol(ModelVariant.MiniGpt4Vicuna0)));
        }
        return texts.Distinct(StringComparer.Ordinal).ToArray();
    }

    private const string AnswerPostProcessorSeparator = "###";

    /// <summary>The words (pieces of two or more characters) of <paramref name="texts"/>, normalised as the tokenizer does, in first-seen order.</summary>
    public static IReadOnlyList<string> Words(IEnumerable<string> texts)
    {
        ArgumentNullException.ThrowIfNull(texts);
        var words = new List<string>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var text in texts)
            foreach (Match m in Chunk().Matches(Normalize(text)))
                if (m.Value.Length >= 2 && seen.Add(m.Value)) words.Add(m.Value);
        // The separator as a word of its own (the stop rule's spelling "▁###").
        if (seen.Add("\u2581###")) words.Add("\u2581###");
        return words;
    }

    /// <summary>The pieces of the model built from <paramref name="texts"/>: (piece, score, SentencePiece type).</summary>
    public static IReadOnlyList<(string Piece, float Score, int Type)> Pieces(IEnumerable<string> texts)
    {
        var pieces = new List<(string Piece, float Score, int Type)> { ("<unk>", 0, 2), ("<s>", 0, 3), ("</s>", 0, 3) };
        for (var b = 0; b < 256; b++) pieces.Add(($"<0x{b:X2}>", 0, 6));
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var singles = new List<string> { "\u2581" };
        for (var c = 0x21; c < 0x7F; c++) singles.Add(((char)c).ToString());
        foreach (var s in singles) if (seen.Add(s)) pieces.Add((s, -1e6f, 1));
        // Merged pieces: each word's prefixes, the shorter first; a merge's score falls with its rank as in a trained model.
        var rank = 0;
        foreach (var word in Words(texts))
            for (var n = 2; n <= word.Length; n++)
            {
                var prefix = word[..n];
                if (seen.Add(prefix)) pieces.Add((prefix, -rank++, 1));
            }
        return pieces;
    }

    /// <summary>The serialized <c>ModelProto</c> of the pieces of <paramref name="texts"/> (default: <see cref="Corpus"/>).</summary>
    public static byte[] Build(IEnumerable<string>? texts = null)
    {
        var pieces = Pieces(texts ?? Corpus());
        var model = new MemoryStream();
        foreach (var (piece, score, type) in pieces)
        {
            var entry = new MemoryStream();
            Bytes(entry, 1, Encoding.UTF8.GetBytes(piece));
            Tag(entry, 2, 5);
            entry.Write(BitConverter.GetBytes(score));
            Varint(entry, 3, (ulong)type);
            Bytes(model, 1, entry.ToArray());
        }
        var trainer = new MemoryStream();
        Varint(trainer, 3, 2);                        // model_type: BPE
        Varint(trainer, 4, (ulong)pieces.Count);      // vocab_size
        Varint(trainer, 35, 1);                       // byte_fallback
        Varint(trainer, 40, 0);                       // unk_id
        Varint(trainer, 41, 1);                       // bos_id
        Varint(trainer, 42, 2);                       // eos_id
        Varint(trainer, 43, unchecked((ulong)-1L));   // pad_id: none
        Bytes(model, 2, trainer.ToArray());
        var normalizer = new MemoryStream();
        Bytes(normalizer, 1, "identity"u8.ToArray());
        Varint(normalizer, 3, 1);                     // add_dummy_prefix
        Varint(normalizer, 4, 0);                     // remove_extra_whitespaces (LLaMA's: off)
        Varint(normalizer, 5, 1);                     // escape_whitespaces
        Bytes(model, 3, normalizer.ToArray());
        return model.ToArray();
    }

    /// <summary>Writes the tokenizer built from <see cref="Corpus"/> to <paramref name="path"/>; returns its piece count.</summary>
    public static int Write(string path)
    {
        var bytes = Build();
        File.WriteAllBytes(path, bytes);
        return Pieces(Corpus()).Count;
    }

    // SentencePiece's normaliser with LLaMA's settings: a space in front, spaces to U+2581.
    private static string Normalize(string text) => text.Length == 0 ? "" : ("\u2581" + text.Replace(' ', '\u2581'));

    // A word: an optional leading space symbol, then a tag, the separator, a run of letters or one printable character; or a lone space symbol.
    [GeneratedRegex("\u2581?(?:</?Img>|###|[A-Za-z]+|[\\x21-\\x7E])|\u2581")]
    private static partial Regex Chunk();

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
