using System.Text.RegularExpressions;
using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Vision;

/// <summary>
/// Key names of EVA ViT checkpoints: LAVIS (<c>eva_vit_g.pth</c>, as the model's own names), the same under the
/// assembled MiniGPT-4 prefix <c>visual_encoder.</c>, and Hugging Face <c>Blip2VisionModel</c>
/// (transformers' `Blip2VisionModel`), with or without the <c>vision_model.</c> prefix.
/// </summary>
internal static partial class EvaVitNames
{
    /// <summary>
    /// A view of <paramref name="source"/> in LAVIS naming. <paramref name="fusedQkvBias"/> tells that the
    /// file stores Hugging Face's fused <c>qkv.bias</c> (exposed as <c>blocks.N.attn.qkv.bias</c>) instead of q/v biases.
    /// </summary>
    public static IWeightSource ToLavis(IWeightSource source, out bool fusedQkvBias)
    {
        fusedQkvBias = false;
        var keys = source.Keys;
        if (keys.Contains("cls_token")) return source;
        if (keys.Contains("visual_encoder.cls_token"))
            return source.Renamed(k => k.StartsWith("visual_encoder.", StringComparison.Ordinal) ? k["visual_encoder.".Length..] : null);

        var hfPrefix = keys.Contains("vision_model.embeddings.class_embedding") ? "vision_model."
            : keys.Contains("embeddings.class_embedding") ? ""
            : throw new MiniGptWeightsException(
                $"{source.Description} is not an EVA ViT checkpoint: it has neither cls_token (LAVIS) nor embeddings.class_embedding (Hugging Face).",
                source.Description);
        fusedQkvBias = keys.Any(k => k.StartsWith(hfPrefix + "encoder.layers.", StringComparison.Ordinal) && k.EndsWith(".self_attn.qkv.bias", StringComparison.Ordinal));
        return source.Renamed(k => k.StartsWith(hfPrefix, StringComparison.Ordinal) ? FromHuggingFace(k[hfPrefix.Length..]) : null);
    }

    /// <summary>Maps one Hugging Face Blip2VisionModel key to LAVIS naming; null for keys outside the ViT (e.g. post_layernorm).</summary>
    public static string? FromHuggingFace(string key)
    {
        switch (key)
        {
            case "embeddings.class_embedding": return "cls_token";
            case "embeddings.position_embedding": return "pos_embed";
            case "embeddings.patch_embedding.weight": return "patch_embed.proj.weight";
            case "embeddings.patch_embedding.bias": return "patch_embed.proj.bias";
        }
        var m = HfLayerRe().Match(key);
        if (!m.Success) return null;
        var rest = m.Groups[2].Value;
        var mapped = rest switch
        {
            _ when rest.StartsWith("layer_norm1.", StringComparison.Ordinal) => "norm1." + rest["layer_norm1.".Length..],
            _ when rest.StartsWith("layer_norm2.", StringComparison.Ordinal) => "norm2." + rest["layer_norm2.".Length..],
            _ when rest.StartsWith("self_attn.projection.", StringComparison.Ordinal) => "attn.proj." + rest["self_attn.projection.".Length..],
            _ when rest.StartsWith("self_attn.", StringComparison.Ordinal) => "attn." + rest["self_attn.".Length..],
            _ when rest.StartsWith("mlp.", StringComparison.Ordinal) => rest,
            _ => null,
        };
        return mapped is null ? null : $"blocks.{m.Groups[1].Value}.{mapped}";
    }

    /// <summary>Number of blocks a (LAVIS-named) key set holds: 1 + the largest N in <c>blocks.N.</c>.</summary>
    public static int BlockCount(IEnumerable<string> keys)
    {
        var max = -1;
        foreach (var k in keys)
        {
            var m = BlockRe().Match(k);
            if (m.Success && int.TryParse(m.Groups[1].Value, out var i)) max = Math.Max(max, i);
        }
        return max + 1;
    }

    /// <summary>Fills q_bias / v_bias of every used block from Hugging Face's fused <c>[q, 0, v]</c> bias (or the separate keys of early conversions).</summary>
    public static void SplitFusedQkvBias(EvaVisionTransformer model, IWeightSource view, VisionConfig config)
    {
        var w = config.Width;
        for (var i = 0; i < config.Depth; i++)
        {
            var fused = $"blocks.{i}.attn.qkv.bias";
            var q = model.Parameter($"blocks.{i}.attn.q_bias");
            var v = model.Parameter($"blocks.{i}.attn.v_bias");
            if (view.TryGetInfo(fused, out var info))
            {
                if (info.Shape.Length != 1 || info.Shape[0] != 3L * w)
                    throw new MiniGptWeightsException(
                        $"{fused} (Hugging Face self_attn.qkv.bias) in {view.Description} has shape [{string.Join(", ", info.Shape)}]; expected [{3L * w}].",
                        view.Description, fused);
                using var bias = view.Load(fused, model.DType, model.Device);
                q.copy_(bias.narrow(0, 0, w));
                v.copy_(bias.narrow(0, 2L * w, w));
            }
            else if (!view.TryGetInfo($"blocks.{i}.attn.q_bias", out _) || !view.TryGetInfo($"blocks.{i}.attn.v_bias", out _))
            {
                throw new MiniGptWeightsException(
                    $"{view.Description} has neither {fused} nor q_bias/v_bias for block {i}.", view.Description, fused);
            }
        }
    }

    [GeneratedRegex(@"^encoder\.layers\.(\d+)\.(.+)$")] private static partial Regex HfLayerRe();
    [GeneratedRegex(@"^blocks\.(\d+)\.")] private static partial Regex BlockRe();
}
