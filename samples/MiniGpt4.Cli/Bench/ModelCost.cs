using System.Text.Json;

namespace MiniGpt4.Cli.Bench;

/// <summary>
/// What one token, one prompt and one image cost in bytes read and arithmetic, from the model's configuration
/// (the manifest's vision section and the language model's config.json): the denominators of the fractions
/// <c>bench</c> reports.
/// </summary>
internal sealed record ModelCost(
    long LinearParameters, long HeadParameters, long NormParameters, int Layers, int Hidden, double ImageFlops, long FileBytes,
    IReadOnlyList<string> Files)
{
    /// <summary>Weight bytes a decode step reads: every block's matrices and norms, the final norm and the head (one embedding row is negligible).</summary>
    public long DecodeWeightBytes(int elementSize) => (LinearParameters + HeadParameters + NormParameters) * elementSize;

    /// <summary>FLOPs of a prefill of <paramref name="tokens"/> positions: the block matrices for every position, causal attention, one head row.</summary>
    public double PrefillFlops(long tokens) => 2.0 * LinearParameters * tokens + 2.0 * Layers * Hidden * (double)tokens * tokens + 2.0 * HeadParameters;

    public static ModelCost For(string model)
    {
        var m = ModelManifest.Load(model);
        var llmPath = m.Resolve(m.Llm.Path);
        var llmDir = Directory.Exists(llmPath) ? llmPath : Path.GetDirectoryName(llmPath)!;
        using var doc = JsonDocument.Parse(File.ReadAllText(Path.Combine(llmDir, "config.json")));
        var c = doc.RootElement;
        int Get(string name, int fallback = 0) => c.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt32() : fallback;
        var h = Get("hidden_size");
        var f = Get("intermediate_size");
        var layers = Get("num_hidden_layers");
        var heads = Get("num_attention_heads", 1);
        var kv = (long)Get("num_key_value_heads", heads) * (h / heads);
        var vocab = Get("vocab_size");
        var linear = layers * (2L * h * h + 2L * h * kv + 3L * h * f);
        var norms = layers * 2L * h + h;

        double image = 0;
        var files = new List<string>();
        if (Directory.Exists(llmPath)) files.AddRange(Directory.EnumerateFiles(llmPath).Where(p => p.EndsWith(".safetensors", StringComparison.Ordinal) || p.EndsWith(".bin", StringComparison.Ordinal)));
        else files.Add(llmPath);
        if (!m.IsLanguageModelOnly)
        {
            var v = m.Vision;
            double t = (v.ImageSize / v.PatchSize) * (v.ImageSize / v.PatchSize) + 1, w = v.Width;
            image = 2.0 * (t - 1) * w * 3 * v.PatchSize * v.PatchSize
                    + v.Depth * (2.0 * t * (4 * w * w + 2 * w * v.MlpHidden) + 4.0 * t * t * w);
            if (m.QFormer is { } q)
            {
                double n = q.NumQueryTokens, qh = 768;
                image += 12 * (2.0 * n * 4 * qh * qh + 2.0 * n * 2 * qh * 3072) + 6 * (2.0 * n * 2 * qh * qh + 2.0 * t * 2 * qh * w) + 2.0 * n * qh * h;
                files.Add(m.Resolve(q.Checkpoint));
            }
            else image += 2.0 * ((t - 1) / 4) * (4 * w) * h;
            files.Add(m.Resolve(v.Checkpoint));
            files.Add(m.Resolve(m.Projection.Checkpoint));
        }
        var existing = files.Where(File.Exists).ToArray();
        return new ModelCost(linear, (long)vocab * h, norms, layers, h, image, existing.Sum(p => new FileInfo(p).Length), existing);
    }
}
