using System.Text.Json;

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
    /// <summary>Width of one attention head.</summary>
    public int HeadDim => HiddenSize / NumAttentionHeads;

    /// <summary>Query heads per key/value head (1 without grouped-query attention).</summary>
    public int QueriesPerKeyValue => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>Largest <c>max_position_embeddings</c> accepted (1 Mi positions; released LLaMA configs say 2048 or 4096).</summary>
    public const int MaxPositions = 1 << 20;

    /// <summary>Largest <c>num_hidden_layers</c> accepted (the largest LLaMA has 126).</summary>
    public const int MaxLayers = 1024;

    /// <summary>Largest <c>hidden_size</c> accepted (the largest LLaMA has 16384).</summary>
    public const int MaxHiddenSize = 1 << 16;

    /// <summary>Largest <c>intermediate_size</c> accepted (the largest LLaMA has 53248).</summary>
    public const int MaxIntermediateSize = 1 << 18;

    /// <summary>Largest <c>vocab_size</c> accepted (LLaMA 3 has 128256).</summary>
    public const int MaxVocabSize = 1 << 22;

    /// <summary>Largest <c>config.json</c> read (real ones are about 1 KB).</summary>
    internal const long MaxFileBytes = 1L << 20;

    /// <summary>
    /// Checks the dimensions are positive, within sane bounds (<see cref="MaxLayers"/>, <see cref="MaxPositions"/>, ...)
    /// and fit together; throws <see cref="MiniGptConfigurationException"/> naming the field otherwise.
    /// Nothing is allocated from these numbers before this check (and, when weights are loaded, before
    /// <see cref="CheckAgainst"/>).
    /// </summary>
    public LlamaConfig Validate()
    {
        static void Positive(string name, double v)
        {
            if (!(v > 0) || !double.IsFinite(v)) throw new MiniGptConfigurationException($"LLaMA config: {name} must be positive and finite, got {v}.");
        }
        static void AtMost(string name, int v, int max)
        {
            if (v > max) throw new MiniGptConfigurationException($"LLaMA config: {name} = {v} is over the limit of {max}.");
        }
        Positive("hidden_size", HiddenSize);
        Positive("intermediate_size", IntermediateSize);
        Positive("num_hidden_layers", NumHiddenLayers);
        Positive("num_attention_heads", NumAttentionHeads);
        Positive("num_key_value_heads", NumKeyValueHeads);
        Positive("rms_norm_eps", RmsNormEps);
        Positive("rope_theta", RopeTheta);
        Positive("max_position_embeddings", MaxPositionEmbeddings);
        Positive("vocab_size", VocabSize);
        AtMost("hidden_size", HiddenSize, MaxHiddenSize);
        AtMost("intermediate_size", IntermediateSize, MaxIntermediateSize);
        AtMost("num_hidden_layers", NumHiddenLayers, MaxLayers);
        AtMost("max_position_embeddings", MaxPositionEmbeddings, MaxPositions);
        AtMost("vocab_size", VocabSize, MaxVocabSize);
        if (RmsNormEps >= 1) throw new MiniGptConfigurationException($"LLaMA config: rms_norm_eps must be below 1, got {RmsNormEps}.");
        if (HiddenSize % NumAttentionHeads != 0)
            throw new MiniGptConfigurationException($"LLaMA config: hidden_size {HiddenSize} is not a multiple of num_attention_heads {NumAttentionHeads}.");
        if (HeadDim % 2 != 0)
            throw new MiniGptConfigurationException($"LLaMA config: head dimension {HeadDim} must be even for rotary embeddings.");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new MiniGptConfigurationException($"LLaMA config: num_attention_heads {NumAttentionHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}.");
        return this;
    }

    /// <summary>
    /// Checks this configuration against the shapes in <paramref name="source"/>'s headers (Hugging Face
    /// keys; no tensor data is read): the layer count must equal the layers the weights hold, and every
    /// tensor the model would allocate must be in the file with the shape hidden_size, intermediate_size,
    /// vocab_size and the head counts imply (<c>lm_head.weight</c> only when untied). Throws
    /// <see cref="MiniGptWeightsException"/> naming the weight file, the key and the configuration fields
    /// (from <paramref name="configFile"/>, when known). Cost: one dictionary lookup per tensor.
    /// </summary>
    public void CheckAgainst(Weights.IWeightSource source, string? configFile = null)
    {
        ArgumentNullException.ThrowIfNull(source);
        Validate();
        var who = configFile ?? "the LLaMA config";
        var layers = Weights.WeightShapes.CountIndexed(source.Keys, "model.layers.");
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
        Weights.WeightShapes.Expect(source, "model.embed_tokens.weight", [v, h], vocab);
        if (!TieWordEmbeddings) Weights.WeightShapes.Expect(source, "lm_head.weight", [v, h], vocab + ", tie_word_embeddings = false");
        Weights.WeightShapes.Expect(source, "model.norm.weight", [h], hidden);
        for (var layer = 0; layer < NumHiddenLayers; layer++)
        {
            var p = $"model.layers.{layer}.";
            Weights.WeightShapes.Expect(source, p + "self_attn.q_proj.weight", [h, h], attention);
            Weights.WeightShapes.Expect(source, p + "self_attn.k_proj.weight", [kv, h], attention);
            Weights.WeightShapes.Expect(source, p + "self_attn.v_proj.weight", [kv, h], attention);
            Weights.WeightShapes.Expect(source, p + "self_attn.o_proj.weight", [h, h], attention);
            Weights.WeightShapes.Expect(source, p + "mlp.gate_proj.weight", [i, h], mlp);
            Weights.WeightShapes.Expect(source, p + "mlp.up_proj.weight", [i, h], mlp);
            Weights.WeightShapes.Expect(source, p + "mlp.down_proj.weight", [h, i], mlp);
            Weights.WeightShapes.Expect(source, p + "input_layernorm.weight", [h], hidden);
            Weights.WeightShapes.Expect(source, p + "post_attention_layernorm.weight", [h], hidden);
        }
    }

    /// <summary>
    /// Reads <c>config.json</c> from a file, or from the folder that holds it. Every problem (missing or
    /// unreadable file, over <see cref="MaxFileBytes"/>, invalid JSON, a field of the wrong type, out of
    /// bounds or inconsistent) is a <see cref="MiniGptConfigurationException"/> whose message starts with the file.
    /// </summary>
    public static LlamaConfig FromFile(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        var file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new MiniGptConfigurationException($"LLaMA config not found: {file}");
        try
        {
            using var stream = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.Read);
            if (stream.Length > MaxFileBytes)
                throw new MiniGptConfigurationException($"{file} is {stream.Length} bytes, over the {MaxFileBytes >> 20} MB limit for a config.json.");
            var bytes = new byte[stream.Length];
            stream.ReadExactly(bytes);
            return FromJson(bytes);
        }
        catch (MiniGptConfigurationException ex) when (!ex.Message.StartsWith(file, StringComparison.Ordinal))
        {
            throw new MiniGptConfigurationException($"{file}: {ex.Message}", ex);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new MiniGptConfigurationException($"{file}: cannot read: {ex.Message}", ex);
        }
    }

    /// <summary>Parses the text of a Hugging Face LLaMA <c>config.json</c>.</summary>
    public static LlamaConfig FromJson(string json) => FromJson(System.Text.Encoding.UTF8.GetBytes(json));

    /// <summary>Parses a Hugging Face LLaMA <c>config.json</c> (UTF-8); invalid JSON is a <see cref="MiniGptConfigurationException"/>.</summary>
    public static LlamaConfig FromJson(ReadOnlyMemory<byte> utf8Json)
    {
        // JsonDocument does not validate UTF-8 inside strings; GetString would then throw InvalidOperationException.
        if (!System.Text.Unicode.Utf8.IsValid(utf8Json.Span)) throw new MiniGptConfigurationException("not valid UTF-8 JSON text.");
        JsonDocument doc;
        try { doc = JsonDocument.Parse(utf8Json, new JsonDocumentOptions { MaxDepth = 16 }); }
        catch (JsonException ex) { throw new MiniGptConfigurationException($"not valid JSON ({ex.Message})", ex); }
        using var _ = doc;
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new MiniGptConfigurationException("config.json must hold a JSON object.");

        if (Str(root, "model_type") is { } type && type != "llama")
            throw new MiniGptConfigurationException($"model_type '{type}' is not supported (expected 'llama').");
        if (Str(root, "hidden_act") is { } act && act != "silu")
            throw new MiniGptConfigurationException($"hidden_act '{act}' is not supported (LLaMA uses 'silu').");
        if (root.TryGetProperty("rope_scaling", out var scaling) && scaling.ValueKind != JsonValueKind.Null)
            throw new MiniGptConfigurationException("rope_scaling is not supported (only plain rotary embeddings).");
        if (root.TryGetProperty("attention_bias", out var bias) && bias.ValueKind == JsonValueKind.True)
            throw new MiniGptConfigurationException("attention_bias = true is not supported (LLaMA projections have no bias).");

        var hidden = Int(root, "hidden_size") ?? throw Missing("hidden_size");
        var heads = Int(root, "num_attention_heads") ?? throw Missing("num_attention_heads");
        if (Int(root, "head_dim") is { } hd && heads > 0 && hd != hidden / heads)
            throw new MiniGptConfigurationException($"head_dim {hd} differs from hidden_size / num_attention_heads; not supported.");

        return new LlamaConfig(
            HiddenSize: hidden,
            IntermediateSize: Int(root, "intermediate_size") ?? throw Missing("intermediate_size"),
            NumHiddenLayers: Int(root, "num_hidden_layers") ?? throw Missing("num_hidden_layers"),
            NumAttentionHeads: heads,
            NumKeyValueHeads: Int(root, "num_key_value_heads") ?? heads,
            RmsNormEps: Num(root, "rms_norm_eps") ?? 1e-6,
            RopeTheta: Num(root, "rope_theta") ?? 10000.0,
            MaxPositionEmbeddings: Int(root, "max_position_embeddings") ?? Int(root, "max_sequence_length") ?? 2048, // Vicuna v0 (4.28.dev) spells it max_sequence_length
            VocabSize: Int(root, "vocab_size") ?? throw Missing("vocab_size"),
            TieWordEmbeddings: root.TryGetProperty("tie_word_embeddings", out var tie) && tie.ValueKind == JsonValueKind.True,
            BosTokenId: FirstInt(root, "bos_token_id"),
            EosTokenId: FirstInt(root, "eos_token_id")).Validate();
    }

    private static MiniGptConfigurationException Missing(string key) => new($"config.json lacks '{key}'.");

    private static string? Str(JsonElement o, string key)
    {
        if (!o.TryGetProperty(key, out var v) || v.ValueKind != JsonValueKind.String) return null;
        try { return v.GetString(); }
        catch (InvalidOperationException ex) // an escaped lone surrogate ("\ud800")
        {
            throw new MiniGptConfigurationException($"'{key}' is not a valid string: {ex.Message}", ex);
        }
    }

    private static double? Num(JsonElement o, string key)
    {
        if (!o.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetDouble(out var d) || !double.IsFinite(d))
            throw new MiniGptConfigurationException($"'{key}' must be a finite number, got {Raw(v)}.");
        return d;
    }

    private static int? Int(JsonElement o, string key)
    {
        if (!o.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var i))
            throw new MiniGptConfigurationException($"'{key}' must be an integer (a plain JSON integer that fits 32 bits), got {Raw(v)}.");
        return i;
    }

    /// <summary>The JSON text of a value for a message, cut to 40 characters.</summary>
    private static string Raw(JsonElement v)
    {
        var text = v.GetRawText();
        return text.Length <= 40 ? text : text[..40] + "...";
    }

    // Later configs may give a list of eos ids; the first is kept (informational only).
    private static int? FirstInt(JsonElement o, string key)
    {
        if (!o.TryGetProperty(key, out var v)) return null;
        if (v.ValueKind == JsonValueKind.Array)
            foreach (var e in v.EnumerateArray()) return e.ValueKind == JsonValueKind.Number && e.TryGetInt32(out var first) ? first : null;
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : null;
    }
}
