using System.Text.Encodings.Web;
using System.Text.Json;

namespace MiniGpt4.Cli.Output;

/// <summary>The JSON the verbs print with --format json. Scripts parse these keys: keep them stable.</summary>
internal static class Json
{
    private static readonly JsonSerializerOptions Options = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static string Serialize<T>(T value) => JsonSerializer.Serialize(value, Options);

    /// <summary>One answer: text, raw_text, token_ids, prompt, segment_ids, counts, finish_reason, usage and timings.</summary>
    public static string Response(MiniGptResponse r) => Serialize(new Dictionary<string, object?>
    {
        ["text"] = r.Text,
        ["raw_text"] = r.RawText,
        ["token_ids"] = r.TokenIds,
        ["prompt"] = r.Prompt,
        ["segment_ids"] = r.SegmentIds,
        ["prompt_tokens"] = r.Usage.PromptTokens,
        ["generated_tokens"] = r.Usage.GeneratedTokens,
        ["finish_reason"] = r.FinishReason.ToString().ToLowerInvariant(),
        ["sequence_score"] = r.SequenceScore,
        ["usage"] = new Dictionary<string, int>
        {
            ["prompt_tokens"] = r.Usage.PromptTokens, ["generated_tokens"] = r.Usage.GeneratedTokens,
            ["truncated_prompt_tokens"] = r.Usage.TruncatedPromptTokens, ["reused_prompt_tokens"] = r.Usage.ReusedPromptTokens,
            ["prefilled_prompt_tokens"] = r.Usage.PrefilledPromptTokens,
        },
        ["timings"] = new Dictionary<string, double>
        {
            ["image_encode_ms"] = r.Timings.ImageEncodeMilliseconds, ["prefill_ms"] = r.Timings.PrefillMilliseconds,
            ["decode_ms"] = r.Timings.DecodeMilliseconds, ["decode_tokens_per_s"] = r.Timings.DecodeTokensPerSecond,
        },
    });
}
