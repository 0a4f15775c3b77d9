using System.Text.Json;
using MiniGpt4.Extensions.Hosting;

namespace MiniGpt4.WebHost;

/// <summary>A request refused with an OpenAI-style error (status, message, type, param, code).</summary>
public sealed class OpenAiError(int status, string message, string type = "invalid_request_error", string? param = null, string? code = null)
    : Exception(message)
{
    /// <summary>HTTP status.</summary>
    public int Status { get; } = status;

    /// <summary>OpenAI's error type (<c>invalid_request_error</c>, <c>server_error</c>, ...).</summary>
    public string Type { get; } = type;

    /// <summary>The request field at fault, when one is.</summary>
    public string? Param { get; } = param;

    /// <summary>A machine-readable code, when one applies (<c>context_length_exceeded</c>, ...).</summary>
    public string? Code { get; } = code;

    /// <summary>Seconds after which a retry may succeed (sent as <c>Retry-After</c>).</summary>
    public int? RetryAfterSeconds { get; init; }

    /// <summary>A 400 naming <paramref name="param"/>.</summary>
    public static OpenAiError BadRequest(string message, string? param = null, string? code = null) => new(400, message, param: param, code: code);

    /// <summary>The body: <c>{"error": {"message", "type", "param", "code"}}</c>.</summary>
    public object Body() => new { error = new { message = Message, type = Type, param = Param, code = Code } };

    /// <summary>Writes the error as the response (headers not yet sent).</summary>
    public Task WriteAsync(HttpResponse response)
    {
        response.StatusCode = Status;
        if (RetryAfterSeconds is { } s) response.Headers.RetryAfter = s.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return response.WriteAsJsonAsync(Body());
    }

    /// <summary>
    /// The error a failure of the chat client stands for: the engine's admission refusals (queue full: 429 with
    /// Retry-After; context too long: 400 <c>context_length_exceeded</c>; over the memory budget: 413
    /// <c>request_too_large</c>), images, options the model cannot honour, a model not loaded (503).
    /// </summary>
    public static OpenAiError From(Exception ex) => ex switch
    {
        OpenAiError e => e,
        MiniGptQueueFullException q => new(429, q.Message, "rate_limit_error", code: "rate_limit_exceeded") { RetryAfterSeconds = 1 },
        MiniGptContextLengthException c => new(400, c.Message, param: "messages", code: "context_length_exceeded"),
        MiniGptCapacityException c => new(413, c.Message, param: "max_tokens", code: "request_too_large"),
        MiniGptImageException i => new(400, "An image was refused: " + i.Message, param: "messages", code: "invalid_image"),
        MiniGptModelUnavailableException u => new(503, u.Message, "server_error", code: u.State == MiniGptModelState.Failed ? "model_load_failed" : "model_loading")
        {
            RetryAfterSeconds = u.State == MiniGptModelState.Failed ? null : 5,
        },
        ObjectDisposedException => new(503, "The server is shutting down.", "server_error", code: "shutting_down"),
        NotSupportedException n => new(400, n.Message, code: "unsupported"),
        ArgumentException a => new(400, a.Message, param: a.ParamName is "messages" ? "messages" : null),
        JsonException j => new(400, "The body is not valid JSON: " + j.Message, code: "invalid_json"),
        BadHttpRequestException b => new(b.StatusCode, b.Message, code: b.StatusCode == 413 ? "request_too_large" : null),
        MiniGptException m => new(400, m.Message),
        _ => new(500, "The server failed while answering; see its log.", "server_error"),
    };
}
