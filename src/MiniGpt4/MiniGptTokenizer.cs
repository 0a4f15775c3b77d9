using MiniGpt4.Text;

namespace MiniGpt4;

/// <summary>
/// The model's SentencePiece tokenizer on its own (counting tokens, inspecting prompts), with the
/// reference's ids (transformers 4.30's slow LlamaTokenizer). Thread-safe.
/// </summary>
public sealed class MiniGptTokenizer
{
    private readonly LlamaTextTokenizer _inner;

    private MiniGptTokenizer(LlamaTextTokenizer inner) => _inner = inner;

    /// <summary>
    /// Loads a tokenizer from a <c>tokenizer.model</c> file, a Hugging Face folder holding one, or a model
    /// manifest (its language model's tokenizer).
    /// </summary>
    public static MiniGptTokenizer Load(string path)
    {
        var full = Path.GetFullPath(path);
        if (File.Exists(full) && !full.EndsWith(".json", StringComparison.OrdinalIgnoreCase))
            return new MiniGptTokenizer(Models.LlamaLanguageModel.LoadTokenizer(Path.GetDirectoryName(full)!, full));
        if (Directory.Exists(full) && File.Exists(Path.Combine(full, "tokenizer.model")))
            return new MiniGptTokenizer(Models.LlamaLanguageModel.LoadTokenizer(full, null));
        var m = ModelManifest.Load(full);
        return new MiniGptTokenizer(Models.LlamaLanguageModel.LoadTokenizer(m.Resolve(m.Llm.Path), m.Llm.Tokenizer is null ? null : m.Resolve(m.Llm.Tokenizer)));
    }

    /// <summary>Beginning-of-sequence id.</summary>
    public int BosId => _inner.BosId;

    /// <summary>End-of-sequence id.</summary>
    public int EosId => _inner.EosId;

    /// <summary>Vocabulary size.</summary>
    public int VocabSize => _inner.VocabSize;

    /// <summary>Token ids of <paramref name="text"/>; special tokens written in the text become their ids.</summary>
    public IReadOnlyList<int> Encode(string text, bool addBos = true) => _inner.Encode(text, addBos);

    /// <summary>Text of <paramref name="ids"/>.</summary>
    public string Decode(IEnumerable<int> ids, bool skipSpecialTokens = true) => _inner.Decode(ids, skipSpecialTokens);

    /// <summary>The vocabulary piece of one id (e.g. <c>▁Hello</c>, <c>&lt;0x0A&gt;</c>).</summary>
    public string Piece(int id) => _inner.IdToPiece(id);
}
