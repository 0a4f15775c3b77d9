using System.Text.Json;
using MiniGpt4.Runtime;
using MiniGpt4.Weights;

namespace MiniGpt4;

/// <summary>
/// Converts the release files (fp16 <c>.pth</c>/<c>.bin</c>) into one safetensors bundle per component in
/// the model's dtype, plus a manifest, so later loads map the weights without converting them. Tensors are
/// converted one at a time: memory stays near the largest tensor, whatever the model size.
/// </summary>
public static class MiniGptConverter
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

    /// <summary>
    /// Converts like <see cref="ConvertAsync(string, string, MiniGptDType, IProgress{MiniGptProgress}?, CancellationToken)"/>
    /// in bfloat16, with the language model's linear layers quantized to <paramref name="quantization"/> (8-bit head;
    /// docs/quantization.md). The result loads without naming a format.
    /// </summary>
    public static Task<string> ConvertQuantizedAsync(string manifestPath, string outputDirectory, MiniGptQuantization quantization,
        IProgress<MiniGptProgress>? progress = null, CancellationToken cancellationToken = default)
        => Task.Run(() => Convert(ModelManifest.Load(manifestPath), outputDirectory, MiniGptDType.BFloat16, progress, cancellationToken, quantization), cancellationToken);

    private static string Convert(ModelManifest m, string outDir, MiniGptDType dtype, IProgress<MiniGptProgress>? progress, CancellationToken ct,
        MiniGptQuantization quantization = MiniGptQuantization.None)
    {
        NativeRuntime.EnsureLoaded();
        var st = Models.ModelLoader.ToScalarType(dtype);
        var plan = quantization == MiniGptQuantization.None ? null : Language.Quantization.LlamaQuantization.For(Models.ModelLoader.ToQuantFormat(quantization));
        if (plan is not null && ModelPreset.For(m.Variant).LoraAlpha is not null && !m.IsLanguageModelOnly)
            throw new MiniGptConfigurationException("Quantized conversion of a model with LoRA adapters (MiniGPT-v2) is not supported yet: the adapters must be merged before quantizing.");
        outDir = Path.GetFullPath(outDir);
        Directory.CreateDirectory(outDir);
        var manifest = new Dictionary<string, object?> { ["variant"] = ModelPreset.For(m.Variant).Name };

        if (!m.IsLanguageModelOnly)
        {
            // Blocks at or beyond the configured depth are never used: leave them out (blocks.N.* counts N + 1 blocks).
            Write("vision encoder", 0.0, m.Vision.Checkpoint, "vision.safetensors", k => WeightShapes.CountIndexed([k], "blocks.") > m.Vision.Depth ? null : k);
            manifest["vision"] = new Dictionary<string, object>
            {
                ["checkpoint"] = "vision.safetensors", ["image_size"] = m.Vision.ImageSize, ["patch_size"] = m.Vision.PatchSize,
                ["width"] = m.Vision.Width, ["depth"] = m.Vision.Depth, ["heads"] = m.Vision.Heads, ["mlp_hidden"] = m.Vision.MlpHidden,
            };
            ct.ThrowIfCancellationRequested();

            if (m.QFormer is { } q)
            {
                Write("q-former", 0.05, q.Checkpoint, "qformer.safetensors",
                    k => k.StartsWith("t5_proj.", StringComparison.Ordinal) || k.EndsWith(".position_ids", StringComparison.Ordinal) ? null : k);
                var qs = new Dictionary<string, object> { ["checkpoint"] = "qformer.safetensors", ["num_query_tokens"] = q.NumQueryTokens };
                if (q.Config is not null)
                {
                    File.Copy(m.Resolve(q.Config), Path.Combine(outDir, "qformer_config.json"), overwrite: true);
                    qs["config"] = "qformer_config.json";
                }
                manifest["qformer"] = qs;
            }

            // Keep the projection and (MiniGPT-v2) the LoRA adapters; buffers such as inv_freq are not weights.
            Write("projection", 0.1, m.Projection.Checkpoint, "projection.safetensors",
                k => k.StartsWith("llama_proj.", StringComparison.Ordinal) || k.Contains(".lora_", StringComparison.Ordinal) ? k : null);
            manifest["projection"] = new Dictionary<string, object> { ["checkpoint"] = "projection.safetensors" };
            if (m.Lora is { } lora) manifest["lora"] = new Dictionary<string, object> { ["alpha"] = lora.Alpha };
            ct.ThrowIfCancellationRequested();
        }

        var llmOut = Directory.CreateDirectory(Path.Combine(outDir, "llm")).FullName;
        Write("language model", 0.15, m.Llm.Path, "llm", k => k.EndsWith(".rotary_emb.inv_freq", StringComparison.Ordinal) ? null : k, sharded: true, quantize: plan);
        foreach (var name in new[] { "config.json", "generation_config.json", "tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json" })
        {
            var f = Path.Combine(m.LlmFolder, name);
            if (File.Exists(f)) File.Copy(f, Path.Combine(llmOut, name), overwrite: true);
        }
        if (m.Llm.Tokenizer is not null) File.Copy(m.Resolve(m.Llm.Tokenizer), Path.Combine(llmOut, "tokenizer.model"), overwrite: true);
        manifest["llm"] = plan is null
            ? new Dictionary<string, object> { ["path"] = "llm" }
            : new Dictionary<string, object>
            {
                ["path"] = "llm", ["quantization"] = Language.Quantization.LlamaQuantization.Name(plan.Blocks),
                ["quantization_head"] = Language.Quantization.LlamaQuantization.Name(plan.Head),
            };

        var path = Path.Combine(outDir, "minigpt4.json");
        File.WriteAllText(path, JsonSerializer.Serialize(manifest, new JsonSerializerOptions { WriteIndented = true }));
        progress?.Report(new MiniGptProgress("done", 1.0, path));
        return path;

        // Writes the tensors of a manifest checkpoint that rename keeps (null drops one) to outDir/target, a file or a folder of shards.
        void Write(string stage, double fraction, string checkpoint, string target, Func<string, string?> rename, bool sharded = false,
            Language.Quantization.LlamaQuantization? quantize = null)
        {
            var source = m.Resolve(checkpoint);
            progress?.Report(new MiniGptProgress(stage, fraction, source));
            using var weights = WeightFiles.Open(source);
            using var kept = weights.Renamed(rename);
            using var quantized = quantize is null ? null
                : new Language.Quantization.QuantizingWeightSource(kept, quantize, Language.LlamaConfig.FromFile(m.LlmFolder).TieWordEmbeddings);
            var metadata = quantize is null ? null : new Dictionary<string, string>
            {
                ["quantization"] = Language.Quantization.LlamaQuantization.Name(quantize.Blocks),
                ["quantization_head"] = Language.Quantization.LlamaQuantization.Name(quantize.Head),
                ["quantization_layout"] = Language.Quantization.QuantLayout.Name,
            };
            if (sharded) SafetensorsWriter.WriteSharded(Path.Combine(outDir, target), (IWeightSource?)quantized ?? kept, ShardBytes, st, metadata);
            else SafetensorsWriter.Write(Path.Combine(outDir, target), kept, st);
        }
    }
}
