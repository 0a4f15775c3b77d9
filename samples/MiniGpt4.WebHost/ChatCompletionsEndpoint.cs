using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Options;
using MiniGpt4.Extensions.AI;
using MiniGpt4.Extensions.Hosting;

namespace MiniGpt4.WebHost;

/// <summary>
/// <c>POST /v1/chat/completions</c> over the model's <see cref="IChatClient"/>: a plain <c>chat.completion</c> or, with
/// <c>stream: true</c>, server-sent <c>chat.completion.chunk</c> events. Every refusal is found before the first byte of a
/// stream is sent (the first update is awaited first), so it comes as an OpenAI-style error with its status. The request's
/// cancellation token is the connection's: a client that goes away cancels the answer, which frees its slot.
/// </summary>
public static class ChatCompletionsEndpoint
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>The extension field (on the message, and on the last chunk's delta) with MiniGPT-v2's grounding boxes.</summary>
    public const string GroundingBoxesField = "grounding_boxes";

    /// <summary>Handles one request.</summary>
    public static async Task HandleAsync(HttpContext http, MiniGptModel model, IOptions<ServerOptions> server, IHttpClientFactory downloads)
    {
        var ct = http.RequestAborted;
        try
        {
            var request = await ReadAsync(http, server.Value, ct);
            await DownloadAsync(request, server.Value, downloads, ct);
            var client = model.GetChatClient();
            if (request.Stream) await StreamAsync(http, client, request, model.ModelId, ct);
            else await AnswerAsync(http, client, request, model.ModelId, ct);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The client went away: the answer was cancelled and its slot freed; nothing to send.
        }
        catch (Exception ex) when (!http.Response.HasStarted)
        {
            await OpenAiError.From(ex).WriteAsync(http.Response);
        }
    }

    private static async Task<ChatCompletionRequest> ReadAsync(HttpContext http, ServerOptions server, CancellationToken ct)
    {
        if (http.Request.ContentLength > server.MaxRequestBodyBytes)
            throw new OpenAiError(413, $"The body is over the limit of {server.MaxRequestBodyBytes} bytes.", code: "request_too_large");
        if (http.Request.ContentType is { } type && !type.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
            throw OpenAiError.BadRequest("Send the body as application/json.", code: "invalid_content_type");
        using var doc = await JsonDocument.ParseAsync(http.Request.Body, default, ct);
        return ChatCompletionRequest.Parse(doc.RootElement, server);
    }

    private static async Task DownloadAsync(ChatCompletionRequest request, ServerOptions server, IHttpClientFactory downloads, CancellationToken ct)
    {
        if (request.ImageUrls.Count == 0) return;
        var http = downloads.CreateClient("images");
        foreach (var (slot, url) in request.ImageUrls)
        {
            using var response = await http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead, ct);
            if (!response.IsSuccessStatusCode)
                throw OpenAiError.BadRequest($"Downloading {url} answered {(int)response.StatusCode}.", "messages", "invalid_image");
            if (response.Content.Headers.ContentLength > server.MaxDownloadedImageBytes)
                throw OpenAiError.BadRequest($"The image at {url} is over {server.MaxDownloadedImageBytes} bytes.", "messages", "invalid_image");
            var bytes = await response.Content.ReadAsByteArrayAsync(ct);
            if (bytes.Length > server.MaxDownloadedImageBytes)
                throw OpenAiError.BadRequest($"The image at {url} is over {server.MaxDownloadedImageBytes} bytes.", "messages", "invalid_image");
            slot.Message.Contents[slot.Index] = new DataContent(bytes, response.Content.Headers.ContentType?.MediaType ?? "image/*");
        }
    }

    private static async Task AnswerAsync(HttpContext http, IChatClient client, ChatCompletionRequest request, string modelId, CancellationToken ct)
    {
        var response = await client.GetResponseAsync(request.Messages, request.Options, ct);
        var message = new Dictionary<string, object?> { ["role"] = "assistant", ["content"] = response.Text };
        if (response.GetGroundingBoxes() is { } boxes) message[GroundingBoxesField] = boxes.Select(Box).ToArray();
        await http.Response.WriteAsJsonAsync(new
        {
            id = "chatcmpl-" + (response.ResponseId ?? Guid.NewGuid().ToString("N")),
            @object = "chat.completion",
            created = Created(response.CreatedAt),
            model = modelId,
            choices = new[] { new { index = 0, message, finish_reason = Finish(response.FinishReason), logprobs = (object?)null } },
            usage = Usage(response.Usage),
        }, Json, ct);
    }

    private static async Task StreamAsync(HttpContext http, IChatClient client, ChatCompletionRequest request, string modelId, CancellationToken ct)
    {
        await using var updates = client.GetStreamingResponseAsync(request.Messages, request.Options, ct).GetAsyncEnumerator(ct);
        // The first update runs admission, the images and the prompt: a refusal still gets its status and JSON.
        var more = await updates.MoveNextAsync();
        var id = "chatcmpl-" + Guid.NewGuid().ToString("N");
        var created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        http.Response.Headers["X-Accel-Buffering"] = "no";
        object Chunk(object delta, string? finish, object? usage = null, bool noChoices = false) => new
        {
            id,
            @object = "chat.completion.chunk",
            created,
            model = modelId,
            choices = noChoices ? Array.Empty<object>() : new object[] { new { index = 0, delta, finish_reason = finish, logprobs = (object?)null } },
            usage,
        };
        await SendAsync(http, Chunk(new { role = "assistant", content = "" }, null), ct);
        UsageDetails? usage = null;
        try
        {
            while (more)
            {
                var u = updates.Current;
                var text = string.Concat(u.Contents.OfType<TextContent>().Select(t => t.Text));
                usage = u.Contents.OfType<UsageContent>().FirstOrDefault()?.Details ?? usage;
                if (u.FinishReason is { } finish)
                {
                    var delta = new Dictionary<string, object?>();
                    if (text.Length > 0) delta["content"] = text;
                    if (u.AdditionalProperties?.TryGetValue(MiniGptChatClientExtensions.GroundingBoxesKey, out var b) == true && b is IReadOnlyList<MiniGptGroundingBox> boxes)
                        delta[GroundingBoxesField] = boxes.Select(Box).ToArray();
                    await SendAsync(http, Chunk(delta, Finish(finish)), ct);
                }
                else if (text.Length > 0)
                {
                    await SendAsync(http, Chunk(new { content = text }, null), ct);
                }
                more = await updates.MoveNextAsync();
            }
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
        {
            // Headers are sent: the error goes in the stream, as OpenAI's does.
            await SendAsync(http, OpenAiError.From(ex).Body(), ct);
            return;
        }
        if (request.IncludeUsage) await SendAsync(http, Chunk(new { }, null, Usage(usage), noChoices: true), ct);
        await http.Response.WriteAsync("data: [DONE]\n\n", ct);
        await http.Response.Body.FlushAsync(ct);
    }

    private static async Task SendAsync(HttpContext http, object value, CancellationToken ct)
    {
        await http.Response.WriteAsync("data: " + JsonSerializer.Serialize(value, Json) + "\n\n", ct);
        await http.Response.Body.FlushAsync(ct);
    }

    private static string Finish(ChatFinishReason? reason) => reason == ChatFinishReason.Length ? "length" : "stop";

    private static long Created(DateTimeOffset? at) => (at ?? DateTimeOffset.UtcNow).ToUnixTimeSeconds();

    private static object Usage(UsageDetails? u) => new
    {
        prompt_tokens = u?.InputTokenCount ?? 0,
        completion_tokens = u?.OutputTokenCount ?? 0,
        total_tokens = (u?.InputTokenCount ?? 0) + (u?.OutputTokenCount ?? 0),
        prompt_tokens_details = new { cached_tokens = u?.CachedInputTokenCount ?? 0 },
    };

    private static object Box(MiniGptGroundingBox b) => new { phrase = b.Phrase, left = b.Left, top = b.Top, right = b.Right, bottom = b.Bottom };
}
