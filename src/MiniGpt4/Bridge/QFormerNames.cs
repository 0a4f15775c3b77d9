using MiniGpt4.Weights;

namespace MiniGpt4.Bridge;

/// <summary>
/// Key names of Q-Former checkpoints: LAVIS (<c>blip2_pretrained_flant5xxl.pth</c>, the module's own names) and
/// Hugging Face <c>Blip2ForConditionalGeneration</c> / <c>Blip2QFormerModel</c>.
/// </summary>
internal static class QFormerNames
{
    /// <summary>Hugging Face key prefixes of the Q-Former bridge and their LAVIS equivalents.</summary>
    private static readonly (string HuggingFace, string Lavis)[] Prefixes =
    [
        ("query_tokens", "query_tokens"),
        ("vision_model.post_layernorm.", "ln_vision."),
        ("qformer.layernorm.", "Qformer.bert.embeddings.LayerNorm."),
        ("qformer.embeddings.layernorm.", "Qformer.bert.embeddings.LayerNorm."),
        ("qformer.embeddings.position_ids", "Qformer.bert.embeddings.position_ids"),
        ("qformer.encoder.layer.", "Qformer.bert.encoder.layer."),
    ];

    /// <summary>True when <paramref name="keys"/> use Hugging Face's Q-Former names.</summary>
    public static bool IsHuggingFace(IReadOnlyCollection<string> keys)
        => keys.Contains("qformer.layernorm.weight") || keys.Contains("qformer.embeddings.layernorm.weight");

    /// <summary>
    /// A LAVIS-named view of <paramref name="source"/>: unchanged for LAVIS files; for Hugging Face files the
    /// Q-Former, <c>query_tokens</c> and <c>vision_model.post_layernorm</c> (= ln_vision) renamed, every other
    /// part of the file (vision tower, language model and its projection) left out. ln_vision keeps MiniGPT-4's
    /// eps 1e-5 (Hugging Face's own model uses 1e-6).
    /// </summary>
    public static IWeightSource ToLavis(IWeightSource source)
        => IsHuggingFace(source.Keys) ? source.Renamed(FromHuggingFace) : source;

    /// <summary>Maps one Hugging Face key to LAVIS naming; null for keys outside the Q-Former bridge.</summary>
    public static string? FromHuggingFace(string key)
    {
        var (hf, lavis) = Prefixes.FirstOrDefault(p => key.StartsWith(p.HuggingFace, StringComparison.Ordinal));
        return hf is null ? null : (lavis + key[hf.Length..])
            .Replace(".crossattention.attention.", ".crossattention.self.", StringComparison.Ordinal)
            .Replace(".attention.attention.", ".attention.self.", StringComparison.Ordinal);
    }
}
