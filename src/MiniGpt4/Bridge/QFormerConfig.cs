using System.Text.Json;

namespace MiniGpt4.Bridge;

/// <summary>
/// Q-Former shape: the BERT fields (hidden size, layers, heads, intermediate size, LayerNorm eps) plus the
/// BLIP-2 additions (cross-attention every <see cref="CrossAttentionFreq"/> layers, starting at layer 0;
/// <see cref="NumQueryTokens"/> learned queries; cross-attention keys/values from <see cref="EncoderWidth"/>-wide
/// vision tokens). Defaults are MiniGPT-4's: bert-base-uncased, 32 queries, EVA-ViT-g width 1408.
/// </summary>
internal sealed record QFormerConfig(
    int Hidden = 768,
    int Layers = 12,
    int Heads = 12,
    int Intermediate = 3072,
    int CrossAttentionFreq = 2,
    double Eps = 1e-12,
    int NumQueryTokens = 32,
    int EncoderWidth = 1408)
{
    /// <summary>Whether layer <paramref name="layer"/> has cross-attention (<c>layer % freq == 0</c>, as LAVIS).</summary>
    public bool HasCrossAttention(int layer) => layer % CrossAttentionFreq == 0;

    /// <summary>Throws <see cref="MiniGptConfigurationException"/> for numbers that cannot describe a Q-Former.</summary>
    public QFormerConfig Validate()
    {
        void Require(bool ok, string what)
        {
            if (!ok) throw new MiniGptConfigurationException($"Invalid Q-Former configuration {this}: {what}.");
        }
        Require(Hidden > 0 && Heads > 0 && Hidden % Heads == 0, "the hidden size must be a positive multiple of the head count");
        Require(Layers > 0 && Intermediate > 0, "layers and intermediate size must be positive");
        Require(CrossAttentionFreq > 0, "cross_attention_freq must be positive");
        Require(NumQueryTokens > 0 && EncoderWidth > 0, "query count and encoder width must be positive");
        Require(Eps > 0, "layer_norm_eps must be positive");
        return this;
    }

    /// <summary>
    /// Reads a BERT <c>config.json</c> (the reference uses bert-base-uncased's): hidden_size, num_hidden_layers,
    /// num_attention_heads, intermediate_size, layer_norm_eps, hidden_act (must be the exact "gelu"), and, when present,
    /// cross_attention_freq, encoder_width and query_length. The BLIP-2 values MiniGPT-4 sets in code
    /// (<paramref name="numQueryTokens"/>, <paramref name="crossAttentionFreq"/>, <paramref name="encoderWidth"/>,
    /// e.g. from a model manifest) win when given; otherwise the file's, otherwise MiniGPT-4's 32 / 2 / 1408.
    /// </summary>
    public static QFormerConfig FromBertConfigJson(string path, int? numQueryTokens = null, int? crossAttentionFreq = null, int? encoderWidth = null)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllText(path));
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or JsonException)
        {
            throw new MiniGptConfigurationException($"Cannot read the Q-Former BERT configuration {path}: {ex.Message}", ex);
        }
        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
                throw new MiniGptConfigurationException($"{path} is not a JSON object.");
            var act = Str(root, "hidden_act", path) ?? "gelu";
            if (act != "gelu")
                throw new MiniGptConfigurationException($"{path}: hidden_act '{act}' is not supported; the Q-Former uses the exact (erf) 'gelu'.");
            var d = new QFormerConfig();
            return new QFormerConfig(
                Hidden: Int(root, "hidden_size", path) ?? d.Hidden,
                Layers: Int(root, "num_hidden_layers", path) ?? d.Layers,
                Heads: Int(root, "num_attention_heads", path) ?? d.Heads,
                Intermediate: Int(root, "intermediate_size", path) ?? d.Intermediate,
                CrossAttentionFreq: crossAttentionFreq ?? Int(root, "cross_attention_freq", path) ?? d.CrossAttentionFreq,
                Eps: Num(root, "layer_norm_eps", path) ?? d.Eps,
                NumQueryTokens: numQueryTokens ?? Int(root, "query_length", path) ?? d.NumQueryTokens,
                EncoderWidth: encoderWidth ?? Int(root, "encoder_width", path) ?? d.EncoderWidth).Validate();
        }
    }

    private static JsonElement? Get(JsonElement root, string name)
        => root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    private static int? Int(JsonElement root, string name, string path)
        => Get(root, name) is { } v
            ? v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i
              : throw new MiniGptConfigurationException($"{path}: '{name}' must be an integer; got {v.GetRawText()}.")
            : null;

    private static double? Num(JsonElement root, string name, string path)
        => Get(root, name) is { } v
            ? v.ValueKind == JsonValueKind.Number ? v.GetDouble()
              : throw new MiniGptConfigurationException($"{path}: '{name}' must be a number; got {v.GetRawText()}.")
            : null;

    private static string? Str(JsonElement root, string name, string path)
        => Get(root, name) is { } v
            ? v.ValueKind == JsonValueKind.String ? v.GetString()
              : throw new MiniGptConfigurationException($"{path}: '{name}' must be a string; got {v.GetRawText()}.")
            : null;
}
