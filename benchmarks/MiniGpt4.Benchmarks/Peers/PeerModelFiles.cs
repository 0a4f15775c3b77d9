using System.Text.Json;
using MiniGpt4.Cli.Synth;

namespace MiniGpt4.Benchmarks.Peers;

/// <summary>
/// The files both engines read, generated on first use into a folder outside the repository
/// (<c>$MINIGPT4_PEERS_DIR</c>, default <c>$TMPDIR/minigpt4-peers</c>) and reused afterwards:
/// a random-weight LLaMA with the real 7B layer shape as an HF folder (float32 safetensors, written by the
/// CLI's <c>synth</c>) plus its
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

    /// <summary>
    /// The benchmark model's HF folder, generated if missing by the CLI's <c>synth</c> writer: preset llama2-7b
    /// (the 7B block shape with a 32 000-row vocabulary, so the real LLaMA tokenizer matches it in the GGUF),
    /// language model only, <see cref="Layers"/> blocks, float32, seed 20261129.
    /// </summary>
    public static string BenchHfFolder()
    {
        var folder = Path.Combine(Root, $"llama7b-shape-{Layers}L");
        if (File.Exists(Path.Combine(folder, "minigpt4.json"))) return folder;
        ModelSynthesizer.Write(new SynthRequest(SynthPreset.Get("llama2-7b"), folder, Layers: Layers, LlmOnly: true,
            DType: SynthDType.Float32, Seed: 20261129, Tokenizer: LlamaTokenizer), Console.Error);
        return folder;
    }

    /// <summary>The benchmark model as GGUF in <paramref name="dtype"/>, converted if missing.</summary>
    public static string BenchGguf(PeerDType dtype)
    {
        var folder = BenchHfFolder();
        var path = Path.Combine(Root, $"llama7b-shape-{Layers}L-{dtype.ToString().ToLowerInvariant()}-a{GgufWriter.Alignment}.gguf");
        if (!File.Exists(path)) GgufWriter.ConvertHfLlama(folder, LlamaTokenizer, path, dtype == PeerDType.F32 ? GgmlType.F32 : GgmlType.BF16);
        return path;
    }

    /// <summary>stories260K as float32 GGUF, converted if missing.</summary>
    public static string StoriesGguf()
    {
        Directory.CreateDirectory(Root);
        var path = Path.Combine(Root, $"stories260K-f32-a{GgufWriter.Alignment}.gguf");
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
