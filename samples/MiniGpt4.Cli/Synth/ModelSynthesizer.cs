using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniGpt4.Cli.Synth;

/// <summary>What <see cref="ModelSynthesizer.Write"/> writes.</summary>
/// <param name="Preset">The released model to imitate.</param>
/// <param name="OutputFolder">Where to write (created if missing; files of an earlier run are replaced).</param>
/// <param name="Layers">LLM blocks (null: the release's).</param>
/// <param name="VisionBlocks">EVA-ViT-g blocks stored (null: the release's 40, of which 39 are used).</param>
/// <param name="LlmOnly">Only the language model: the Hugging Face folder is <paramref name="OutputFolder"/> itself.</param>
/// <param name="DType">Element type of every file.</param>
/// <param name="Seed">Random seed; the same seed gives the same bytes.</param>
/// <param name="Tokenizer">A real tokenizer.model to copy; null writes <see cref="SyntheticTokenizer"/>'s.</param>
/// <param name="MaxShardBytes">Largest safetensors shard (Hugging Face's default is 5 GB).</param>
internal sealed record SynthRequest(
    SynthPreset Preset, string OutputFolder, int? Layers = null, int? VisionBlocks = null, bool LlmOnly = false,
    SynthDType DType = SynthDType.Float16, ulong Seed = 0, string? Tokenizer = null, long MaxShardBytes = 5_000_000_000);

/// <summary>
/// Writes a MiniGPT-4 with random weights at the released shapes, in the released layouts: EVA-ViT-g, the
/// BLIP-2 Q-Former and the stage-2 projection as torch.save zips (<c>.pth</c>), the language model as a Hugging
/// Face folder (config.json, safetensors shards, tokenizer.model), and a <c>minigpt4.json</c> naming them.
/// Data is generated and written in 32 MiB pieces, so a 13 GB model needs no more memory than that.
/// </summary>
internal static class ModelSynthesizer
{
    /// <summary>Writes the model; returns the manifest's path. Progress lines go to <paramref name="progress"/>.</summary>
    public static string Write(SynthRequest r, TextWriter? progress, CancellationToken ct = default)
    {
        var p = r.Preset;
        var layers = r.Layers ?? p.Llm.Layers;
        var visionBlocks = r.VisionBlocks ?? EvaVitG.StoredBlocks;
        var shape = p.Llm with { Layers = layers };
        var root = Path.GetFullPath(r.OutputFolder);
        var llmDir = r.LlmOnly ? root : Path.Combine(root, p.LlmFolder);
        Directory.CreateDirectory(llmDir);

        var files = new List<(string Path, List<TensorSpec> Tensors, bool Torch, bool UnderModel)>();
        if (!r.LlmOnly)
        {
            files.Add((Path.Combine(root, SynthPreset.VisionFile), TensorPlan.Vision(visionBlocks), true, false));
            if (p.HasQFormer) files.Add((Path.Combine(root, SynthPreset.QFormerFile), TensorPlan.QFormer(), true, true));
            files.Add((Path.Combine(root, p.ProjectionFile), TensorPlan.Projection(p, layers), true, true));
        }
        var llm = TensorPlan.Llm(shape, layers);
        var total = (files.SelectMany(f => f.Tensors).Sum(t => t.Elements) + llm.Sum(t => t.Elements)) * r.DType.Size();
        progress?.WriteLine($"[synth] {p.Name}{(r.LlmOnly ? " (language model only)" : "")}: {layers} LLM blocks, " +
                            $"{(r.LlmOnly ? "" : $"{visionBlocks} ViT blocks, ")}{r.DType.TorchName()}, seed {r.Seed}: {total / 1e9:F2} GB to {root}");

        var data = new TensorData(new RandomWeights(r.Seed, r.DType), new SynthProgress(total, progress), ct);
        foreach (var (path, tensors, _, underModel) in files)
        {
            ct.ThrowIfCancellationRequested();
            TorchCheckpoint.Write(path, tensors, data, underModel);
        }
        ct.ThrowIfCancellationRequested();
        WriteLlmFolder(llmDir, shape, llm, data, r);

        var manifest = Manifest(r);
        var manifestPath = Path.Combine(root, "minigpt4.json");
        File.WriteAllText(manifestPath, manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        return manifestPath;
    }

    /// <summary>The <c>minigpt4.json</c> of <paramref name="r"/>'s model: the released file names, and the ViT depth when fewer blocks are written.</summary>
    internal static JsonObject Manifest(SynthRequest r)
    {
        var p = r.Preset;
        var visionBlocks = r.VisionBlocks ?? EvaVitG.StoredBlocks;
        var manifest = new JsonObject { ["variant"] = p.Variant };
        if (!r.LlmOnly)
        {
            var vision = new JsonObject { ["checkpoint"] = SynthPreset.VisionFile };
            if (visionBlocks < EvaVitG.UsedBlocks) vision["depth"] = visionBlocks;
            manifest["vision"] = vision;
            if (p.HasQFormer) manifest["qformer"] = new JsonObject { ["checkpoint"] = SynthPreset.QFormerFile };
            manifest["projection"] = new JsonObject { ["checkpoint"] = p.ProjectionFile };
            if (p.LoraAlpha is double alpha) manifest["lora"] = new JsonObject { ["alpha"] = alpha };
        }
        manifest["llm"] = new JsonObject { ["path"] = r.LlmOnly ? "." : p.LlmFolder };
        return manifest;
    }

    private static void WriteLlmFolder(string dir, LlmShape s, List<TensorSpec> tensors, TensorData data, SynthRequest r)
    {
        var config = new Dictionary<string, object>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" }, ["model_type"] = "llama", ["hidden_act"] = "silu",
            ["hidden_size"] = s.Hidden, ["intermediate_size"] = s.Intermediate, ["num_hidden_layers"] = s.Layers,
            ["num_attention_heads"] = s.Heads, ["num_key_value_heads"] = s.KvHeads, ["vocab_size"] = s.Vocab,
            ["max_position_embeddings"] = s.MaxPositions, ["rms_norm_eps"] = s.RmsNormEps, ["rope_theta"] = s.RopeTheta,
            ["initializer_range"] = 0.02, ["tie_word_embeddings"] = false, ["bos_token_id"] = 1, ["eos_token_id"] = 2,
            ["pad_token_id"] = 0, ["torch_dtype"] = r.DType.TorchName(), ["use_cache"] = true,
        };
        File.WriteAllText(Path.Combine(dir, "config.json"), JsonSerializer.Serialize(config, new JsonSerializerOptions { WriteIndented = true }) + "\n");
        var tokenizer = Path.Combine(dir, "tokenizer.model");
        if (r.Tokenizer is { } real) File.Copy(real, tokenizer, overwrite: true);
        else File.WriteAllBytes(tokenizer, SyntheticTokenizer.Build());
        var added = Path.Combine(dir, "added_tokens.json");
        if (s.HasPadToken) File.WriteAllText(added, "{\"[PAD]\": 32000}\n");
        else if (File.Exists(added)) File.Delete(added);
        foreach (var stale in Directory.EnumerateFiles(dir, "model*.safetensors*")) File.Delete(stale);
        SafetensorsFiles.WriteFolder(dir, tensors, data, r.MaxShardBytes);
    }
}
