using System.Text.Json.Nodes;
using MiniGpt4.Tests.Support;
using MiniGpt4.Text;

namespace MiniGpt4.Tests.Text;

/// <summary>Loads the tokenizers (cached) and collects the oracle's prompt segments and generations from reference*.json.</summary>
internal static class TokenizerFixtures
{
    public const string LlamaModel = "assets/llama-tokenizer.model";
    public const string LlamaCases = "assets/llama-tokenizer-cases.json";
    public const string TinyModel = "oracle/tiny/llama/tokenizer.model";
    public const string StoriesModel = "assets/stories260K/tokenizer.model";
    public const string StoriesReference = "assets/stories260K/reference.json";

    private static readonly Dictionary<string, LlamaTextTokenizer> Cache = new();

    public static LlamaTextTokenizer Load(string relative)
    {
        string path = Fixtures.Require(relative);
        lock (Cache)
        {
            if (!Cache.TryGetValue(path, out var t)) Cache[path] = t = LlamaTextTokenizer.FromFile(path);
            return t;
        }
    }

    /// <summary>Every object in <paramref name="root"/> (depth first) with its JSON path.</summary>
    public static IEnumerable<(string Path, JsonObject Obj)> Objects(JsonNode? root, string path = "$")
    {
        switch (root)
        {
            case JsonObject o:
                yield return (path, o);
                foreach (var (k, v) in o)
                    foreach (var x in Objects(v, path + "." + k)) yield return x;
                break;
            case JsonArray a:
                for (int i = 0; i < a.Count; i++)
                    foreach (var x in Objects(a[i], $"{path}[{i}]")) yield return x;
                break;
        }
    }

    /// <summary>Prompt segments (text, add_special_tokens, ids, pieces) in the tiny oracle's reference files.</summary>
    public static List<(string Where, string Text, bool AddBos, int[] Ids, string[] Pieces)> TinySegments()
    {
        var list = new List<(string, string, bool, int[], string[])>();
        foreach (var root in new[] { Oracle.Reference, Oracle.Extension })
            foreach (var (path, o) in Objects(root))
                if (o["text"] is not null && o["add_special_tokens"] is not null && o["ids"] is not null)
                    list.Add((path, o["text"]!.GetValue<string>(), o["add_special_tokens"]!.GetValue<bool>(), Oracle.Ints(o["ids"]), Oracle.Strings(o["pieces"])));
        return list;
    }

    /// <summary>Generated ids with the reference's decoding (decoded_skip_special, decoded_pieces) in the tiny oracle.</summary>
    public static List<(string Where, int[] Ids, string Text, string[]? Pieces)> TinyGenerations()
    {
        var list = new List<(string, int[], string, string[]?)>();
        foreach (var root in new[] { Oracle.Reference, Oracle.Extension })
            foreach (var (path, o) in Objects(root))
                if (o["generated_ids"] is not null && o["decoded_skip_special"] is not null)
                    list.Add((path, Oracle.Ints(o["generated_ids"]), o["decoded_skip_special"]!.GetValue<string>(), o["decoded_pieces"] is null ? null : Oracle.Strings(o["decoded_pieces"])));
        return list;
    }
}
