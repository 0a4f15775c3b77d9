using System.Text.Json;
using MiniGpt4.Weights;

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
    /// <summary>Largest hidden size, intermediate size and encoder width accepted (bert-base: 768, 3072; EVA-ViT-g: 1408).</summary>
    public const int MaxWidth = 1 << 16;

    /// <summary>Largest layer count accepted (bert-base: 12).</summary>
    public const int MaxLayers = 256;

    /// <summary>Largest number of learned query tokens accepted (MiniGPT-4: 32).</summary>
    public const int MaxQueryTokens = 4096;

    /// <summary>Largest BERT <c>config.json</c> read (real ones are under 1 KB).</summary>
    internal const long MaxFileBytes = 1L << 20;

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
        Require(Eps > 0 && Eps < 1 && double.IsFinite(Eps), "layer_norm_eps must be positive and below 1");
        Require(Hidden <= MaxWidth && Intermediate <= MaxWidth && EncoderWidth <= MaxWidth, $"hidden size, intermediate size and encoder width must be at most {MaxWidth}");
        Require(Layers <= MaxLayers, $"at most {MaxLayers} layers");
        Require(NumQueryTokens <= MaxQueryTokens, $"at most {MaxQueryTokens} query tokens");
        return this;
    }

    /// <summary>
    /// Checks this configuration against the shapes of a BLIP-2 checkpoint in LAVIS naming
    /// (<see cref="QFormerNames.ToLavis"/>; headers only, no tensor data): the layer count must equal the
    /// layers the file holds, layer N must have cross-attention exactly when N % cross_attention_freq == 0,
    /// and <c>query_tokens</c>, <c>ln_vision</c> and every layer's projections must have the shapes the
    /// hidden size, intermediate size, query count and encoder width imply. Throws
    /// <see cref="MiniGptWeightsException"/> naming the file, the key and <paramref name="who"/>'s fields.
    /// </summary>
    public void CheckAgainst(IWeightSource lavisView, string who)
    {
        ArgumentNullException.ThrowIfNull(lavisView);
        Validate();
        var file = lavisView.Description;
        const string layerPrefix = "Qformer.bert.encoder.layer.";
        var layers = WeightShapes.CountIndexed(lavisView.Keys, layerPrefix);
        if (layers != Layers)
            throw new MiniGptWeightsException(
                $"{file}: {who} says the Q-Former has {Layers} layer{(Layers == 1 ? "" : "s")} (num_hidden_layers), but the checkpoint holds {layers} ({layerPrefix}N.*).",
                file, layerPrefix);
        long h = Hidden, inter = Intermediate, enc = EncoderWidth;
        var hidden = $"{who}: hidden_size = {Hidden}";
        WeightShapes.Expect(lavisView, "query_tokens", [1, NumQueryTokens, h], $"{hidden}, num_query_tokens = {NumQueryTokens}");
        WeightShapes.Expect(lavisView, "ln_vision.weight", [enc], $"{who}: encoder width (vision.width) = {EncoderWidth}");
        WeightShapes.Expect(lavisView, "Qformer.bert.embeddings.LayerNorm.weight", [h], hidden);
        var mlp = $"{hidden}, intermediate_size = {Intermediate}";
        var cross = $"{hidden}, encoder width (vision.width) = {EncoderWidth}";
        for (var i = 0; i < Layers; i++)
        {
            var p = $"{layerPrefix}{i}.";
            foreach (var n in new[] { "query", "key", "value" }) WeightShapes.Expect(lavisView, $"{p}attention.self.{n}.weight", [h, h], hidden);
            WeightShapes.Expect(lavisView, p + "attention.output.dense.weight", [h, h], hidden);
            WeightShapes.Expect(lavisView, p + "intermediate_query.dense.weight", [inter, h], mlp);
            WeightShapes.Expect(lavisView, p + "output_query.dense.weight", [h, inter], mlp);
            var crossKey = p + "crossattention.self.key.weight";
            if (HasCrossAttention(i))
            {
                WeightShapes.Expect(lavisView, p + "crossattention.self.query.weight", [h, h], hidden);
                WeightShapes.Expect(lavisView, crossKey, [h, enc], cross);
                WeightShapes.Expect(lavisView, p + "crossattention.self.value.weight", [h, enc], cross);
                WeightShapes.Expect(lavisView, p + "crossattention.output.dense.weight", [h, h], hidden);
            }
            else if (lavisView.TryGetInfo(crossKey, out _))
                throw new MiniGptWeightsException(
                    $"{file}: layer {i} has cross-attention ('{crossKey}'), but {who}: cross_attention_freq = {CrossAttentionFreq} gives it none.", file, crossKey);
        }
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
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            if (stream.Length > MaxFileBytes)
                throw new MiniGptConfigurationException($"{path} is {stream.Length} bytes, over the {MaxFileBytes >> 20} MB limit for a BERT config.json.");
            var bytes = new byte[stream.Length];
            stream.ReadExactly(bytes);
            // JsonDocument does not validate UTF-8 inside strings; GetString would then throw InvalidOperationException.
            if (!System.Text.Unicode.Utf8.IsValid(bytes)) throw new MiniGptConfigurationException($"{path} is not valid UTF-8 JSON text.");
            doc = JsonDocument.Parse(bytes, new JsonDocumentOptions { MaxDepth = 16 });
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
            var config = new QFormerConfig(
                Hidden: Int(root, "hidden_size", path) ?? d.Hidden,
                Layers: Int(root, "num_hidden_layers", path) ?? d.Layers,
                Heads: Int(root, "num_attention_heads", path) ?? d.Heads,
                Intermediate: Int(root, "intermediate_size", path) ?? d.Intermediate,
                CrossAttentionFreq: crossAttentionFreq ?? Int(root, "cross_attention_freq", path) ?? d.CrossAttentionFreq,
                Eps: Num(root, "layer_norm_eps", path) ?? d.Eps,
                NumQueryTokens: numQueryTokens ?? Int(root, "query_length", path) ?? d.NumQueryTokens,
                EncoderWidth: encoderWidth ?? Int(root, "encoder_width", path) ?? d.EncoderWidth);
            try { return config.Validate(); }
            catch (MiniGptConfigurationException ex) { throw new MiniGptConfigurationException($"{path}: {ex.Message}", ex); }
        }
    }

    private static JsonElement? Get(JsonElement root, string name)
        => root.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    private static int? Int(JsonElement root, string name, string path)
        => Get(root, name) is { } v
            ? v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i
              : throw new MiniGptConfigurationException($"{path}: '{name}' must be an integer; got {Raw(v)}.")
            : null;

    private static double? Num(JsonElement root, string name, string path)
        => Get(root, name) is { } v
            ? v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var d) && double.IsFinite(d) ? d
              : throw new MiniGptConfigurationException($"{path}: '{name}' must be a finite number; got {Raw(v)}.")
            : null;

    private static string? Str(JsonElement root, string name, string path)
        => Get(root, name) is { } v
            ? v.ValueKind == JsonValueKind.String ? StringOf(v, name, path)
              : throw new MiniGptConfigurationException($"{path}: '{name}' must be a string; got {Raw(v)}.")
            : null;

    private static string? StringOf(JsonElement v, string name, string path)
    {
        try { return v.GetString(); }
        catch (InvalidOperationException ex) // an escaped lone surrogate ("\ud800")
        {
            throw new MiniGptConfigurationException($"{path}: '{name}' is not a valid string: {ex.Message}", ex);
        }
    }

    private static string Raw(JsonElement v)
    {
        var text = v.GetRawText();
        return text.Length <= 40 ? text : text[..40] + "...";
    }
}
