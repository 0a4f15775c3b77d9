using MiniGpt4.Weights;
using static MiniGpt4.Weights.WeightShapes;

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
    /// <summary>Largest number of learned query tokens accepted (MiniGPT-4: 32).</summary>
    public const int MaxQueryTokens = 4096;

    /// <summary>Whether layer <paramref name="layer"/> has cross-attention (<c>layer % freq == 0</c>, as LAVIS).</summary>
    public bool HasCrossAttention(int layer) => layer % CrossAttentionFreq == 0;

    /// <summary>
    /// Throws <see cref="MiniGptConfigurationException"/>, naming <paramref name="where"/> and the field, for numbers
    /// that cannot describe a Q-Former or are out of bounds.
    /// </summary>
    public QFormerConfig Validate(string where = "Q-Former configuration")
    {
        var check = new ConfigCheck(where);
        check.InRange("hidden_size", Hidden, 1 << 16);                        // bert-base: 768
        check.InRange("num_attention_heads", Heads, Hidden);
        check.Require(Hidden % Heads == 0, $"hidden_size {Hidden} is not a multiple of num_attention_heads {Heads}");
        check.InRange("num_hidden_layers", Layers, 256);                      // bert-base: 12
        check.InRange("intermediate_size", Intermediate, 1 << 16);            // bert-base: 3072
        check.Require(CrossAttentionFreq > 0, $"cross_attention_freq must be positive (got {CrossAttentionFreq})");
        check.InRange("num_query_tokens", NumQueryTokens, MaxQueryTokens);
        check.InRange("encoder width (vision.width)", EncoderWidth, 1 << 16); // EVA-ViT-g: 1408
        check.Positive("layer_norm_eps", Eps, below: 1);
        return this;
    }

    /// <summary>
    /// Checks the layer count, which layers have cross-attention and the shape of every tensor the Q-Former would
    /// allocate against a BLIP-2 checkpoint's headers in LAVIS naming (<see cref="QFormerNames.ToLavis"/>). Throws
    /// <see cref="MiniGptWeightsException"/> naming the file, the key and <paramref name="who"/>'s fields.
    /// </summary>
    public void CheckAgainst(IWeightSource lavisView, string who)
    {
        Validate(who);
        var file = lavisView.Description;
        const string layerPrefix = "Qformer.bert.encoder.layer.";
        var layers = CountIndexed(lavisView.Keys, layerPrefix);
        if (layers != Layers)
            throw new MiniGptWeightsException(
                $"{file}: {who} says the Q-Former has {Layers} layer{(Layers == 1 ? "" : "s")} (num_hidden_layers), but the checkpoint holds {layers} ({layerPrefix}N.*).",
                file, layerPrefix);
        long h = Hidden, inter = Intermediate, enc = EncoderWidth;
        var hidden = $"{who}: hidden_size = {Hidden}";
        Expect(lavisView, "query_tokens", [1, NumQueryTokens, h], $"{hidden}, num_query_tokens = {NumQueryTokens}");
        Expect(lavisView, "ln_vision.weight", [enc], $"{who}: encoder width (vision.width) = {EncoderWidth}");
        Expect(lavisView, "Qformer.bert.embeddings.LayerNorm.weight", [h], hidden);
        var mlp = $"{hidden}, intermediate_size = {Intermediate}";
        var cross = $"{hidden}, encoder width (vision.width) = {EncoderWidth}";
        for (var i = 0; i < Layers; i++)
        {
            var p = $"{layerPrefix}{i}.";
            foreach (var n in new[] { "query", "key", "value" }) Expect(lavisView, $"{p}attention.self.{n}.weight", [h, h], hidden);
            Expect(lavisView, p + "attention.output.dense.weight", [h, h], hidden);
            Expect(lavisView, p + "intermediate_query.dense.weight", [inter, h], mlp);
            Expect(lavisView, p + "output_query.dense.weight", [h, inter], mlp);
            var crossKey = p + "crossattention.self.key.weight";
            if (HasCrossAttention(i))
            {
                Expect(lavisView, p + "crossattention.self.query.weight", [h, h], hidden);
                Expect(lavisView, crossKey, [h, enc], cross);
                Expect(lavisView, p + "crossattention.self.value.weight", [h, enc], cross);
                Expect(lavisView, p + "crossattention.output.dense.weight", [h, h], hidden);
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
        var json = ConfigJson.Read(path);
        var act = json.String("hidden_act") ?? "gelu";
        json.Check.Require(act == "gelu", $"hidden_act '{act}' is not supported; the Q-Former uses the exact (erf) 'gelu'");
        var d = new QFormerConfig();
        return new QFormerConfig(
            Hidden: json.Int("hidden_size") ?? d.Hidden,
            Layers: json.Int("num_hidden_layers") ?? d.Layers,
            Heads: json.Int("num_attention_heads") ?? d.Heads,
            Intermediate: json.Int("intermediate_size") ?? d.Intermediate,
            CrossAttentionFreq: crossAttentionFreq ?? json.Int("cross_attention_freq") ?? d.CrossAttentionFreq,
            Eps: json.Number("layer_norm_eps") ?? d.Eps,
            NumQueryTokens: numQueryTokens ?? json.Int("query_length") ?? d.NumQueryTokens,
            EncoderWidth: encoderWidth ?? json.Int("encoder_width") ?? d.EncoderWidth).Validate(path);
    }
}
