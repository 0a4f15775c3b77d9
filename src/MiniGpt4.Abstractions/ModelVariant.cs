using System.Text.Json.Serialization;

namespace MiniGpt4;

/// <summary>The model family member a manifest describes. Serialised by System.Text.Json as its manifest name.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ModelVariant>))]
public enum ModelVariant
{
    /// <summary>MiniGPT-4 with Vicuna v0 (Q-Former, 32 image tokens, <c>###Human:</c> template). Manifest name <c>minigpt4-vicuna0</c>.</summary>
    [JsonStringEnumMemberName("minigpt4-vicuna0")]
    MiniGpt4Vicuna0,

    /// <summary>MiniGPT-4 for Llama-2 (no Q-Former, 64 concatenated image tokens, <c>[INST]</c> template). Manifest name <c>minigpt4-llama2</c>.</summary>
    [JsonStringEnumMemberName("minigpt4-llama2")]
    MiniGpt4Llama2,

    /// <summary>MiniGPT-v2 (448 px, 256 image tokens, LoRA merged at load, task tags). Manifest name <c>minigptv2</c>.</summary>
    [JsonStringEnumMemberName("minigptv2")]
    MiniGptV2,
}
