using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace MiniGpt4.Extensions.AI;

/// <summary>
/// Maps <see cref="ChatOptions"/> to <see cref="GenerationOptions"/> (the table in the package README). The starting point
/// is what <see cref="ChatOptions.RawRepresentationFactory"/> returns when it is a <see cref="GenerationOptions"/>, else the
/// variant's defaults. Options the model cannot honour are refused with <see cref="NotSupportedException"/>.
/// </summary>
internal static class OptionsMapper
{
    /// <summary>The <see cref="ChatOptions.AdditionalProperties"/> keys understood, with what they set.</summary>
    public static IReadOnlyDictionary<string, Func<GenerationOptions, object?, GenerationOptions>> Extras { get; } =
        new Dictionary<string, Func<GenerationOptions, object?, GenerationOptions>>(StringComparer.Ordinal)
        {
            ["repetition_penalty"] = (o, v) => o with { RepetitionPenalty = Single(v, "repetition_penalty") },
            ["num_beams"] = (o, v) => o with { NumBeams = Int(v, "num_beams") },
            ["length_penalty"] = (o, v) => o with { LengthPenalty = Single(v, "length_penalty") },
            ["min_new_tokens"] = (o, v) => o with { MinNewTokens = Int(v, "min_new_tokens") },
            ["do_sample"] = (o, v) => o with { DoSample = Bool(v, "do_sample") },
            ["use_template_stops"] = (o, v) => o with { UseTemplateStops = Bool(v, "use_template_stops") },
            ["max_context_length"] = (o, v) => o with { MaxContextLength = Int(v, "max_context_length") },
            ["truncate_prompt_from_left"] = (o, v) => o with { TruncatePromptFromLeft = Bool(v, "truncate_prompt_from_left") },
        };

    public static GenerationOptions Map(ChatOptions? options, IChatClient client, MiniGptPipeline pipeline, string modelId)
    {
        if (options is null) return pipeline.DefaultGenerationOptions;
        var g = options.RawRepresentationFactory?.Invoke(client) as GenerationOptions ?? pipeline.DefaultGenerationOptions;
        if (options.Tools is { Count: > 0 }) throw new NotSupportedException("MiniGpt4 does not support tools (ChatOptions.Tools).");
        if (options.ToolMode is RequiredChatToolMode) throw new NotSupportedException("MiniGpt4 does not support tools (ChatOptions.ToolMode requires a tool call).");
        if (options.ResponseFormat is ChatResponseFormatJson)
            throw new NotSupportedException("MiniGpt4 cannot guarantee JSON output (ChatOptions.ResponseFormat); ask for text.");
        if (options.FrequencyPenalty is not null || options.PresencePenalty is not null)
            throw new NotSupportedException("MiniGpt4 has no frequency or presence penalty; use AdditionalProperties[\"repetition_penalty\"] (Hugging Face's).");
        if (options.Reasoning is not null) throw new NotSupportedException("MiniGpt4 has no reasoning options (ChatOptions.Reasoning).");
        if (options.ConversationId is not null)
            throw new NotSupportedException("MiniGpt4 keeps no conversations by id (ChatOptions.ConversationId): send the whole history; replayed histories reuse cached keys/values.");
        if (options.AllowBackgroundResponses == true || options.ContinuationToken is not null)
            throw new NotSupportedException("MiniGpt4 has no background responses (ChatOptions.AllowBackgroundResponses, ContinuationToken).");
        if (options.ModelId is { } id && id != modelId)
            throw new NotSupportedException($"This client runs '{modelId}', not '{id}' (ChatOptions.ModelId).");
        if (options.Temperature is { } t) g = g with { Temperature = t };
        if (options.TopP is { } p) g = g with { TopP = p };
        if (options.TopK is { } k) g = g with { TopK = k };
        if (options.MaxOutputTokens is { } max) g = g with { MaxNewTokens = max };
        if (options.Seed is { } seed) g = g with { Seed = seed };
        if (options.StopSequences is { Count: > 0 } stops) g = g with { StopStrings = stops.ToArray() };
        if (options.AdditionalProperties is { Count: > 0 } extra)
        {
            foreach (var (key, value) in extra)
            {
                if (!Extras.TryGetValue(key, out var apply))
                    throw new NotSupportedException($"ChatOptions.AdditionalProperties[\"{key}\"] is not a MiniGpt4 option (known: {string.Join(", ", Extras.Keys)}).");
                g = apply(g, value);
            }
        }
        return g;
    }

    private static float Single(object? value, string key) => value switch
    {
        JsonElement { ValueKind: JsonValueKind.Number } e => e.GetSingle(),
        IConvertible c when value is not (string or bool) => c.ToSingle(CultureInfo.InvariantCulture),
        _ => throw Invalid(key, value, "a number"),
    };

    private static int Int(object? value, string key) => value switch
    {
        JsonElement { ValueKind: JsonValueKind.Number } e when e.TryGetInt32(out var i) => i,
        int i => i,
        long l when l is >= int.MinValue and <= int.MaxValue => (int)l,
        _ => throw Invalid(key, value, "an integer"),
    };

    private static bool Bool(object? value, string key) => value switch
    {
        bool b => b,
        JsonElement { ValueKind: JsonValueKind.True } => true,
        JsonElement { ValueKind: JsonValueKind.False } => false,
        _ => throw Invalid(key, value, "true or false"),
    };

    private static ArgumentException Invalid(string key, object? value, string expected) =>
        new($"ChatOptions.AdditionalProperties[\"{key}\"] must be {expected}, not {value ?? "null"}.", nameof(ChatOptions.AdditionalProperties));
}
