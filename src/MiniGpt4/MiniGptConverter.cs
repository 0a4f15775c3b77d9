using System.Text.Json;
using System.Text.RegularExpressions;
using MiniGpt4.Runtime;
using MiniGpt4.Weights;

namespace MiniGpt4;

/// <summary>
/// Converts the release files (fp16 <c>.pth</c>/<c>.bin</c>) into one safetensors bundle per component in
/// the model's dtype, plus a manifest, so later loads map the weights without converting them. Tensors are
/// converted one at a time: memory stays near the largest tensor, whatever the model size.
/// </summary>
public static partial class MiniGptConverter
{
    /// <summary>Largest language-model shard written (bytes).</summary>
    public const long ShardBytes = 2L << 30;

    /// <summary>
    /// Converts the model named by <paramref name="manifestPath"/> into <paramref name="outputDirectory"/>
    /// and returns the path of the new <c>minigpt4.json</c>.
    /// </summary>
    public static Task<string> ConvertAsync(string manifestPath, string outputDirectory, MiniGptDType dtype = MiniGptDType.BFloat16,
        IProgress<MiniGptProgress>? progress = null, CancellationToken cancellationToken = default)
        => Task.Run(() => Convert(ModelManifest.Load(manifestPath), outputDirectory, dtype, progress, cancellationToken), cancellationToken);

    private static string Convert(ModelManifest m, string outDir, MiniGptDType dtype, IProgress<MiniGptProgress>? progress, CancellationToken ct)
    {
        NativeRuntime.EnsureLoaded();
        var st = Models.ModelLoader.ToScalarType(dtype);
        outDir = Path.GetFullPath(outDir);
        Directory.CreateDirectory(outDir);
        var manifest = new Dictionary<string, object?> { ["variant"] = VariantName(m.Variant) };

        if (!m.IsLanguageModelOnly)
        {
            progress?.Report(new MiniGptProgress("vision encoder", 0.0, m.Resolve(m.Vision.Checkpoint)));
            using (var eva = WeightFiles.Open(m.Resolve(m.Vision.Checkpoint)))
            {
                // Blocks at or beyond the configured depth are never used: leave them out.
                using var used = eva.Renamed(k => BlockIndex(k) is int b && b >= m.Vision.Depth ? null : k);
                SafetensorsWriter.Write(Path.Combine(outDir, "vision.safetensors"), used, st);
            }
            manifest["vision"] = new Dictionary<string, object>
            {
                ["checkpoint"] = "vision.safetensors", ["image_size"] = m.Vision.ImageSize, ["patch_size"] = m.Vision.PatchSize,
                ["width"] = m.Vision.Width, ["depth"] = m.Vision.Depth, ["heads"] = m.Vision.Heads, ["mlp_hidden"] = m.Vision.MlpHidden,
            };
            ct.ThrowIfCancellationRequested();

            if (m.QFormer is { } q)
            {
                progress?.Report(new MiniGptProgress("q-former", 0.05, m.Resolve(q.Checkpoint)));
                using (var blip2 = WeightFiles.Open(m.Resolve(q.Checkpoint)))
                {
                    using var kept = blip2.Renamed(k => k.StartsWith("t5_proj.", StringComparison.Ordinal) || k.EndsWith(".position_ids", StringComparison.Ordinal) ? null : k);
                    SafetensorsWriter.Write(Path.Combine(outDir, "qformer.safetensors"), kept, st);
                }
                var qs = new Dictionary<string, object> { ["checkpoint"] = "qformer.safetensors", ["num_query_tokens"] = q.NumQueryTokens };
                if (q.Config is not null)
                {
                    File.Copy(m.Resolve(q.Config), Path.Combine(outDir, "qformer_config.json"), overwrite: true);
                    qs["config"] = "qformer_config.json";
                }
                manifest["qformer"] = qs;
            }

            progress?.Report(new MiniGptProgress("projection", 0.1, m.Resolve(m.Projection.Checkpoint)));
            using (var stage2 = WeightFiles.Open(m.Resolve(m.Projection.Checkpoint)))
            {
                // Keep the projection and (MiniGPT-v2) the LoRA adapters; buffers such as inv_freq are not weights.
                using var kept = stage2.Renamed(k => k.StartsWith("llama_proj.", StringComparison.Ordinal) || k.Contains(".lora_", StringComparison.Ordinal) ? k : null);
                SafetensorsWriter.Write(Path.Combine(outDir, "projection.safetensors"), kept, st);
            }
            manifest["projection"] = new Dictionary<string, object> { ["checkpoint"] = "projection.safetensors" };
            if (m.Lora is { } lora) manifest["lora"] = new Dictionary<string, object> { ["alpha"] = lora.Alpha };
            ct.ThrowIfCancellationRequested();
        }

        progress?.Report(new MiniGptProgress("language model", 0.15, m.Resolve(m.Llm.Path)));
        var llmSrc = m.Resolve(m.Llm.Path);
        var llmOut = Path.Combine(outDir, "llm");
        Directory.CreateDirectory(llmOut);
        using (var llm = WeightFiles.Open(llmSrc))
        using (var kept = llm.Renamed(k => k.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal) ? null : k))
            SafetensorsWriter.WriteSharded(llmOut, kept, ShardBytes, st);
        var llmDir = Directory.Exists(llmSrc) ? llmSrc : Path.GetDirectoryName(llmSrc)!;
        foreach (var name in new[] { "config.json", "generation_config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json" })
        {
            var f = Path.Combine(llmDir, name);
            if (File.Exists(f)) File.Copy(f, Path.Combine(llmOut, name), overwrite: true);
        }
        var llmSection = new Dictionary<string, object> { ["path"] = "llm" };
        if (m.Llm.Tokenizer is not null)
        {
            File.Copy(m.Resolve(m.Llm.Tokenizer), Path.Combine(llmOut, "tokenizer.model"), overwrite: true);
        }
        manifest["llm"] = llmSection;

        var path = Path.Combine(outDir, "minigpt4.json");
        File.WriteAllText(path, JsonSerializer.Serialize(manifest, new JsonSerializerOptions { WriteIndented = true }));
        progress?.Report(new MiniGptProgress("done", 1.0, path));
        return path;
    }

    private static string VariantName(ModelVariant v) => ModelPreset.For(v).Name;

    private static int? BlockIndex(string key)
    {
        var match = BlockRe().Match(key);
        return match.Success ? int.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture) : null;
    }

    [GeneratedRegex(@"^blocks\.(\d+)\.")]
    private static partial Regex BlockRe();
}
