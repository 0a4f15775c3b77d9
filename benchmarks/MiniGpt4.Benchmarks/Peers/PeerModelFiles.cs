using System.Text.Json;
using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Benchmarks.Peers;

/// <summary>
/// The files both engines read, generated on first use into a folder outside the repository
/// (<c>$MINIGPT4_PEERS_DIR</c>, default <c>$TMPDIR/minigpt4-peers</c>) and reused afterwards:
/// a random-weight LLaMA with the real 7B layer shape as an HF folder (float32 safetensors) plus its
/// GGUF conversions, and stories260K's GGUF. Inputs are read in place from <c>$MINIGPT4_SHARED</c>
/// (default <c>/work/shared</c>).
/// </summary>
internal static class PeerModelFiles
{
    /// <summary>Decoder blocks of the benchmark model (<c>$MINIGPT4_PEERS_LAYERS</c>, default 2).</summary>
    public static int Layers => int.TryParse(Environment.GetEnvironmentVariable("MINIGPT4_PEERS_LAYERS"), out var n) && n > 0 ? n : 2;

    /// <summary>Where generated files go.</summary>
    public static string Root => Environment.GetEnvironmentVariable("MINIGPT4_PEERS_DIR") is { Length: > 0 } d
        ? d : Path.Combine(Path.GetTempPath(), "minigpt4-peers");

    private static string Shared => Environment.GetEnvironmentVariable("MINIGPT4_SHARED") is { Length: > 0 } s ? s : "/work/shared";

    /// <summary>The real LLaMA SentencePiece model (32000 pieces).</summary>
    public static string LlamaTokenizer => Path.Combine(Shared, "assets", "llama-tokenizer.model");

    /// <summary>The stories260K HF folder (trained; reference.json holds its greedy tokens).</summary>
    public static string Stories => Path.Combine(Shared, "assets", "stories260K");

    /// <summary>The benchmark model's HF folder, generated if missing.</summary>
    public static string BenchHfFolder()
    {
        var folder = Path.Combine(Root, $"llama7b-shape-{Layers}L");
        if (File.Exists(Path.Combine(folder, "model.safetensors"))) return folder;
        Directory.CreateDirectory(folder);
        const int hidden = 4096, inter = 11008, heads = 32, vocab = 32000;
        File.WriteAllText(Path.Combine(folder, "config.json"), JsonSerializer.Serialize(new Dictionary<string, object>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" }, ["model_type"] = "llama", ["hidden_act"] = "silu",
            ["hidden_size"] = hidden, ["intermediate_size"] = inter, ["num_hidden_layers"] = Layers,
            ["num_attention_heads"] = heads, ["num_key_value_heads"] = heads, ["vocab_size"] = vocab,
            ["max_position_embeddings"] = 2048, ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 10000.0,
            ["tie_word_embeddings"] = false, ["bos_token_id"] = 1, ["eos_token_id"] = 2, ["torch_dtype"] = "float32",
        }));
        var g = new Generator(20261129);
        var items = new List<(string, ScalarType, long[], Func<Tensor>)>();
        void Matrix(string key, long rows, long cols) => items.Add((key, ScalarType.Float32, [rows, cols], () => randn([rows, cols], generator: g).mul_(0.02)));
        // Norm weights around 1 (not exactly 1) so that a mixed-up norm would show in the logits.
        void Norm(string key) => items.Add((key, ScalarType.Float32, [hidden], () => randn([hidden], generator: g).mul_(0.1).add_(1.0)));
        Matrix("model.embed_tokens.weight", vocab, hidden);
        Matrix("lm_head.weight", vocab, hidden);
        Norm("model.norm.weight");
        for (var i = 0; i < Layers; i++)
        {
            var p = $"model.layers.{i}.";
            foreach (var n in new[] { "q", "k", "v", "o" }) Matrix(p + $"self_attn.{n}_proj.weight", hidden, hidden);
            Matrix(p + "mlp.gate_proj.weight", inter, hidden);
            Matrix(p + "mlp.up_proj.weight", inter, hidden);
            Matrix(p + "mlp.down_proj.weight", hidden, inter);
            Norm(p + "input_layernorm.weight");
            Norm(p + "post_attention_layernorm.weight");
        }
        using (no_grad()) SafetensorsWriter.Write(Path.Combine(folder, "model.safetensors"), items);
        return folder;
    }

    /// <summary>The benchmark model as GGUF in <paramref name="dtype"/>, converted if missing.</summary>
    public static string BenchGguf(PeerDType dtype)
    {
        var folder = BenchHfFolder();
        var path = Path.Combine(Root, $"llama7b-shape-{Layers}L-{dtype.ToString().ToLowerInvariant()}.gguf");
        if (!File.Exists(path)) GgufWriter.ConvertHfLlama(folder, LlamaTokenizer, path, dtype == PeerDType.F32 ? GgmlType.F32 : GgmlType.BF16);
        return path;
    }

    /// <summary>stories260K as float32 GGUF, converted if missing.</summary>
    public static string StoriesGguf()
    {
        Directory.CreateDirectory(Root);
        var path = Path.Combine(Root, "stories260K-f32.gguf");
        if (!File.Exists(path)) GgufWriter.ConvertHfLlama(Stories, Path.Combine(Stories, "tokenizer.model"), path, GgmlType.F32);
        return path;
    }

    /// <summary>stories260K's reference greedy case: prompt ids and the 256 generated ids.</summary>
    public static (int[] Prompt, int[] Generated) StoriesReference()
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(Stories, "reference.json")));
        var c = doc.RootElement.GetProperty("cases")[0];
        return (c.GetProperty("prompt_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray(),
                c.GetProperty("generated_ids").EnumerateArray().Select(e => e.GetInt32()).ToArray());
    }
}
