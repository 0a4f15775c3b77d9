using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Vision;

/// <summary>
/// Key names of EVA ViT checkpoints: LAVIS (<c>eva_vit_g.pth</c>, as the model's own names), the same under the
/// assembled MiniGPT-4 prefix <c>visual_encoder.</c>, and Hugging Face <c>Blip2VisionModel</c>
/// (transformers' `Blip2VisionModel`), with or without the <c>vision_model.</c> prefix.
/// </summary>
internal static class EvaVitNames
{
    /// <summary>Parts of Hugging Face names and their LAVIS equivalents, replaced in this order.</summary>
    private static readonly (string HuggingFace, string Lavis)[] Parts =
    [
        ("embeddings.class_embedding", "cls_token"),
        ("embeddings.position_embedding", "pos_embed"),
        ("embeddings.patch_embedding.", "patch_embed.proj."),
        ("encoder.layers.", "blocks."),
        (".layer_norm1.", ".norm1."),
        (".layer_norm2.", ".norm2."),
        (".self_attn.projection.", ".attn.proj."),
        (".self_attn.", ".attn."),
    ];

    /// <summary>
    /// A view of <paramref name="source"/> in LAVIS naming. A Hugging Face file's fused q/k/v bias stays fused
    /// (<see cref="FusedQkvBias"/>) instead of q/v biases.
    /// </summary>
    public static IWeightSource ToLavis(IWeightSource source)
    {
        var keys = source.Keys;
        if (keys.Contains("cls_token")) return source;
        if (keys.Contains("visual_encoder.cls_token"))
            return source.Renamed(k => k.StartsWith("visual_encoder.", StringComparison.Ordinal) ? k["visual_encoder.".Length..] : null);

        var hfPrefix = keys.Contains("vision_model.embeddings.class_embedding") ? "vision_model."
            : keys.Contains("embeddings.class_embedding") ? ""
            : throw new MiniGptWeightsException(
                $"{source.Description} is not an EVA ViT checkpoint: it has neither cls_token (LAVIS) nor embeddings.class_embedding (Hugging Face).",
                source.Description);
        return source.Renamed(k => k.StartsWith(hfPrefix, StringComparison.Ordinal) ? FromHuggingFace(k[hfPrefix.Length..]) : null);
    }

    /// <summary>Maps one Hugging Face Blip2VisionModel key to LAVIS naming; null for keys outside the ViT (e.g. post_layernorm).</summary>
    public static string? FromHuggingFace(string key)
    {
        if (!key.StartsWith("embeddings.", StringComparison.Ordinal) && !key.StartsWith("encoder.layers.", StringComparison.Ordinal)) return null;
        foreach (var (hf, lavis) in Parts) key = key.Replace(hf, lavis, StringComparison.Ordinal);
        return key;
    }

    /// <summary>The LAVIS-view key of block <paramref name="block"/>'s Hugging Face fused bias, <c>cat(q_bias, 0, v_bias)</c>.</summary>
    public static string FusedQkvBias(int block) => $"blocks.{block}.attn.qkv.bias";

    /// <summary>Copies block <paramref name="block"/>'s fused bias into its <paramref name="qBias"/> and <paramref name="vBias"/>.</summary>
    public static void SplitFusedQkvBias(IWeightSource view, int block, Tensor qBias, Tensor vBias)
    {
        var (key, w) = (FusedQkvBias(block), qBias.shape[0]);
        WeightShapes.Expect(view, key, [3 * w], $"vision.width = {w} (Hugging Face's fused self_attn.qkv.bias)");
        using var bias = view.Load(key, qBias.dtype, qBias.device);
        qBias.copy_(bias.narrow(0, 0, w));
        vBias.copy_(bias.narrow(0, 2 * w, w));
    }
}
