using System.Text.Json;
using MiniGpt4.Language.Quantization;
using MiniGpt4.Weights;
using static MiniGpt4.Weights.WeightShapes;

namespace MiniGpt4.Language;

/// <summary>
/// The hyper-parameters of a LLaMA-family decoder, read from a Hugging Face <c>config.json</c>
/// (the fields <c>LlamaForCausalLM</c> uses). Token ids here are informational only: Vicuna v0's
/// config declares bos 0 / eos 1, which is wrong (its tokenizer says 1 / 2), so the pipeline
/// takes special-token ids from the tokenizer, never from this record.
/// </summary>
internal sealed record LlamaConfig(
    int HiddenSize,
    int IntermediateSize,
    int NumHiddenLayers,
    int NumAttentionHeads,
    int NumKeyValueHeads,
    double RmsNormEps,
    double RopeTheta,
    int MaxPositionEmbeddings,
    int VocabSize,
    bool TieWordEmbeddings,
    int? BosTokenId = null,
    int? EosTokenId = null)
{
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Query heads per key/value head (1 without grouped-query attention).</summary>
    public int QueriesPerKeyValue => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>Largest <c>max_position_embeddings</c> accepted (1 Mi positions; released LLaMA configs say 2048 or 4096).</summary>
    public const int MaxPositions = 1 << 20;

    /// <summary>
    /// Checks the dimensions are positive, within sane bounds (a few times the largest LLaMA's) and fit together, before
    /// anything is allocated from them; throws <see cref="MiniGptConfigurationException"/> naming <paramref name="where"/> and the field.
    /// </summary>
    public LlamaConfig Validate(string where = "LLaMA config")
    {
        var check = new ConfigCheck(where);
        check.InRange("hidden_size", HiddenSize, 1 << 16);             // the largest LLaMA: 16384
        check.InRange("intermediate_size", IntermediateSize, 1 << 18); // the largest LLaMA: 53248
        check.InRange("num_hidden_layers", NumHiddenLayers, 1024);     // the largest LLaMA: 126
        check.InRange("num_attention_heads", NumAttentionHeads, HiddenSize);
        check.InRange("num_key_value_heads", NumKeyValueHeads, NumAttentionHeads);
        check.InRange("max_position_embeddings", MaxPositionEmbeddings, MaxPositions);
        check.InRange("vocab_size", VocabSize, 1 << 22);               // LLaMA 3: 128256
        check.Positive("rms_norm_eps", RmsNormEps, below: 1);
        check.Positive("rope_theta", RopeTheta);
        check.Require(HiddenSize % NumAttentionHeads == 0, $"hidden_size {HiddenSize} is not a multiple of num_attention_heads {NumAttentionHeads}");
        check.Require(HeadDim % 2 == 0, $"head dimension {HeadDim} must be even for rotary embeddings");
        check.Require(NumAttentionHeads % NumKeyValueHeads == 0, $"num_attention_heads {NumAttentionHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}");
        return this;
    }

    /// <summary>
    /// Checks the layer count and the shape of every tensor the model would allocate against <paramref name="source"/>'s
    /// headers (Hugging Face keys; no tensor data is read, one dictionary lookup per tensor). Throws
    /// <see cref="MiniGptWeightsException"/> naming the weight file, the key and <paramref name="configFile"/>'s fields.
    /// </summary>
    public void CheckAgainst(IWeightSource source, string? configFile = null)
    {
        var who = configFile ?? "the LLaMA config";
        Validate(who);
        var layers = CountIndexed(source.Keys, "model.layers.");
        if (layers != NumHiddenLayers)
            throw new MiniGptWeightsException(
                $"{source.Description}: {who} says num_hidden_layers = {NumHiddenLayers}, but the weights hold {layers} " +
                $"layer{(layers == 1 ? "" : "s")} (model.layers.N.*): the configuration does not belong to these weights.",
                source.Description, "model.layers");
        long h = HiddenSize, i = IntermediateSize, v = VocabSize, kv = (long)NumKeyValueHeads * HeadDim;
        var vocab = $"{who}: vocab_size = {VocabSize}, hidden_size = {HiddenSize}";
        var hidden = $"{who}: hidden_size = {HiddenSize}";
        var attention = $"{who}: hidden_size = {HiddenSize}, num_attention_heads = {NumAttentionHeads}, num_key_value_heads = {NumKeyValueHeads}";
        var mlp = $"{who}: hidden_size = {HiddenSize}, intermediate_size = {IntermediateSize}";
        // A quantized file (Quantization.LlamaQuantization) holds packed rows and scales instead of each projection's weight.
        var quant = Quantization.LlamaQuantization.Detect(source);
        QuantFormat blocks = quant?.Blocks ?? QuantFormat.None, head = quant?.Head ?? QuantFormat.None;
        Expect(source, "model.embed_tokens.weight", [v, h], vocab);
        if (!TieWordEmbeddings || head != QuantFormat.None)
            Linear(source, "lm_head", head, v, h, vocab + (TieWordEmbeddings ? "" : ", tie_word_embeddings = false"));
        Expect(source, "model.norm.weight", [h], hidden);
        for (var layer = 0; layer < NumHiddenLayers; layer++)
        {
            var p = $"model.layers.{layer}.";
            Linear(source, p + "self_attn.q_proj", blocks, h, h, attention);
            Linear(source, p + "self_attn.k_proj", blocks, kv, h, attention);
            Linear(source, p + "self_attn.v_proj", blocks, kv, h, attention);
            Linear(source, p + "self_attn.o_proj", blocks, h, h, attention);
            Linear(source, p + "mlp.gate_proj", blocks, i, h, mlp);
            Linear(source, p + "mlp.up_proj", blocks, i, h, mlp);
            Linear(source, p + "mlp.down_proj", blocks, h, i, mlp);
            Expect(source, p + "input_layernorm.weight", [h], hidden);
            Expect(source, p + "post_attention_layernorm.weight", [h], hidden);
        }
    }

    private static void Linear(IWeightSource source, string stem, QuantFormat format, long outFeatures, long inFeatures, string because)
        => Quantization.LlamaQuantization.ExpectLinear(source, stem, format, outFeatures, inFeatures, because);

    /// <summary>
    /// Reads <c>config.json</c> from a file, or from the folder that holds it. Every problem (missing or
    /// unreadable file, too large, invalid JSON, a field of the wrong type, out of bounds or inconsistent)
    /// is a <see cref="MiniGptConfigurationException"/> whose message starts with the file.
    /// </summary>
    public static LlamaConfig FromFile(string path)
        => FromJson(ConfigJson.Read(Directory.Exists(path) ? Path.Combine(path, "config.json") : path));

    /// <summary>Reads a parsed Hugging Face LLaMA <c>config.json</c>.</summary>
    public static LlamaConfig FromJson(ConfigJson json)
    {
        var check = json.Check;
        if (json.String("model_type") is { } type) check.Require(type == "llama", $"model_type '{type}' is not supported (expected 'llama')");
        if (json.String("hidden_act") is { } act) check.Require(act == "silu", $"hidden_act '{act}' is not supported (LLaMA uses 'silu')");
        check.Require(json["rope_scaling"] is null, "rope_scaling is not supported (only plain rotary embeddings)");
        check.Require(json.Bool("attention_bias") != true, "attention_bias = true is not supported (LLaMA projections have no bias)");

        var hidden = json.RequiredInt("hidden_size");
        var heads = json.RequiredInt("num_attention_heads");
        if (json.Int("head_dim") is { } hd && heads > 0)
            check.Require(hd == hidden / heads, $"head_dim {hd} differs from hidden_size / num_attention_heads; not supported");

        return new LlamaConfig(
            HiddenSize: hidden,
            IntermediateSize: json.RequiredInt("intermediate_size"),
            NumHiddenLayers: json.RequiredInt("num_hidden_layers"),
            NumAttentionHeads: heads,
            NumKeyValueHeads: json.Int("num_key_value_heads") ?? heads,
            RmsNormEps: json.Number("rms_norm_eps") ?? 1e-6,
            RopeTheta: json.Number("rope_theta") ?? 10000.0,
            MaxPositionEmbeddings: json.Int("max_position_embeddings") ?? json.Int("max_sequence_length") ?? 2048, // Vicuna v0 (4.28.dev) spells it max_sequence_length
            VocabSize: json.RequiredInt("vocab_size"),
            TieWordEmbeddings: json.Bool("tie_word_embeddings") ?? false,
            BosTokenId: FirstInt(json["bos_token_id"]),
            EosTokenId: FirstInt(json["eos_token_id"])).Validate(check.Where);
    }

    // Later configs may give a list of eos ids; the first is kept (informational only, so anything else is ignored).
    private static int? FirstInt(JsonElement? value)
    {
        var v = value is { ValueKind: JsonValueKind.Array } list ? list.EnumerateArray().FirstOrDefault() : value.GetValueOrDefault();
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : null;
    }
}
