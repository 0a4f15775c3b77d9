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

    /// <summary>Checks the dimensions fit together; throws <see cref="MiniGptConfigurationException"/> otherwise.</summary>
    public LlamaConfig Validate()
    {
        static void Positive(string name, double v)
        {
            if (!(v > 0)) throw new MiniGptConfigurationException($"LLaMA config: {name} must be positive, got {v}.");
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
        if (HiddenSize % NumAttentionHeads != 0)
            throw new MiniGptConfigurationException($"LLaMA config: hidden_size {HiddenSize} is not a multiple of num_attention_heads {NumAttentionHeads}.");
        if (HeadDim % 2 != 0)
            throw new MiniGptConfigurationException($"LLaMA config: head dimension {HeadDim} must be even for rotary embeddings.");
        if (NumAttentionHeads % NumKeyValueHeads != 0)
            throw new MiniGptConfigurationException($"LLaMA config: num_attention_heads {NumAttentionHeads} is not a multiple of num_key_value_heads {NumKeyValueHeads}.");
        return this;
    }

    /// <summary>Reads <c>config.json</c> from a file, or from the folder that holds it.</summary>
    public static LlamaConfig FromFile(string path)
    {
        var file = Directory.Exists(path) ? Path.Combine(path, "config.json") : path;
        if (!File.Exists(file)) throw new MiniGptConfigurationException($"LLaMA config not found: {file}");
        try
        {
            return FromJson(File.ReadAllText(file));
        }
        catch (MiniGptConfigurationException ex)
        {
            throw new MiniGptConfigurationException($"{file}: {ex.Message}", ex);
        }
        catch (JsonException ex)
        {
            throw new MiniGptConfigurationException($"{file}: not valid JSON ({ex.Message})", ex);
        }
    }

    /// <summary>Parses the text of a Hugging Face LLaMA <c>config.json</c>.</summary>
    public static LlamaConfig FromJson(string json)
    {
        using var doc = JsonDocument.Parse(json);
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
        => o.TryGetProperty(key, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static double? Num(JsonElement o, string key)
    {
        if (!o.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number) throw new MiniGptConfigurationException($"'{key}' must be a number.");
        return v.GetDouble();
    }

    private static int? Int(JsonElement o, string key)
    {
        if (!o.TryGetProperty(key, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        if (v.ValueKind != JsonValueKind.Number || !v.TryGetInt32(out var i))
            throw new MiniGptConfigurationException($"'{key}' must be an integer.");
        return i;
    }

    // Later configs may give a list of eos ids; the first is kept (informational only).
    private static int? FirstInt(JsonElement o, string key)
    {
        if (!o.TryGetProperty(key, out var v)) return null;
        if (v.ValueKind == JsonValueKind.Array)
            foreach (var e in v.EnumerateArray()) return e.TryGetInt32(out var first) ? first : null;
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : null;
    }
}
