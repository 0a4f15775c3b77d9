namespace MiniGpt4;

/// <summary>
/// The library's traces and metrics (System.Diagnostics, no dependency): an <see cref="System.Diagnostics.ActivitySource"/>
/// and a <see cref="System.Diagnostics.Metrics.Meter"/>, both named <see cref="SourceName"/>, following OpenTelemetry's
/// <c>gen_ai.*</c> semantic conventions for a model served in process. With OpenTelemetry:
/// <c>.AddSource(MiniGptDiagnostics.SourceName)</c> and <c>.AddMeter(MiniGptDiagnostics.SourceName)</c>.
/// <list type="bullet">
/// <item>A span <c>chat {model}</c> (kind internal) per answer, from the start of its prefill to its last token:
/// <c>gen_ai.operation.name</c>, <c>gen_ai.provider.name</c>, <c>gen_ai.request.model</c>, the sampling options
/// (<c>gen_ai.request.temperature</c>, <c>top_p</c>, <c>top_k</c>, <c>max_tokens</c>, <c>seed</c>, <c>stop_sequences</c>, and
/// <c>minigpt4.request.*</c> for the rest), <c>gen_ai.usage.input_tokens</c> (text and image positions),
/// <c>gen_ai.usage.output_tokens</c>, <c>gen_ai.usage.cache_read.input_tokens</c> (positions reused from the KV cache),
/// <c>minigpt4.usage.image_tokens</c>, <c>gen_ai.response.finish_reasons</c>; <c>error.type</c> when it fails.</item>
/// <item>Metrics: <c>gen_ai.server.request.duration</c>, <c>gen_ai.server.time_to_first_token</c>,
/// <c>gen_ai.server.time_per_output_token</c> (seconds), <c>gen_ai.server.token.usage</c> (tokens per request by
/// <c>gen_ai.token.type</c>, image positions counted as input), <c>minigpt4.server.image_tokens</c>,
/// <c>minigpt4.server.queue.depth</c> and <c>minigpt4.server.active_requests</c> (admission),
/// <c>minigpt4.server.queue.wait_duration</c>.</item>
/// </list>
/// No prompt or answer text is recorded unless <see cref="EnableSensitiveData"/> is on.
/// </summary>
public static class MiniGptDiagnostics
{
    /// <summary>The name of the library's <see cref="System.Diagnostics.ActivitySource"/> and <see cref="System.Diagnostics.Metrics.Meter"/>: <c>MiniGpt4</c>.</summary>
    public const string SourceName = "MiniGpt4";

    /// <summary>
    /// Record the prompt (its text, images as placeholders) and the answer text on each span as
    /// <c>gen_ai.input.messages</c> and <c>gen_ai.output.messages</c>. Off by default; the default is on when the
    /// environment variable <c>OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT</c> is <c>true</c> at start-up.
    /// Process-wide.
    /// </summary>
    public static bool EnableSensitiveData { get; set; } =
        string.Equals(Environment.GetEnvironmentVariable("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"), "true", StringComparison.OrdinalIgnoreCase);
}
