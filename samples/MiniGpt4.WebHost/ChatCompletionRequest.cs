using System.Text.Json;
using Microsoft.Extensions.AI;

namespace MiniGpt4.WebHost;

/// <summary>
/// A <c>POST /v1/chat/completions</c> body read with the field rules of docs/serving.md: fields clients commonly send and
/// the server does not use are ignored; known fields it cannot honour are 400s naming the field; an unknown field within
/// edit distance 2 of a known one is a 400 naming both; a wrong type is a 400 naming the field. Images come as data URIs
/// (or http(s) URLs of allowed hosts, collected in <see cref="ImageUrls"/> for the caller to download).
/// </summary>
public sealed class ChatCompletionRequest
{
    /// <summary>Fields read.</summary>
    private static readonly string[] Used =
    [
        "model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "stream",
        "stream_options", "top_k", "repetition_penalty", "num_beams", "min_tokens",
    ];

    /// <summary>Fields clients send that change nothing here.</summary>
    private static readonly string[] Ignored = ["user", "store", "metadata", "service_tier", "parallel_tool_calls"];

    /// <summary>Fields of OpenAI's API this server cannot honour (some only with certain values).</summary>
    private static readonly string[] Unsupported =
    [
        "tools", "tool_choice", "functions", "function_call", "response_format", "logprobs", "top_logprobs", "n",
        "frequency_penalty", "presence_penalty", "logit_bias", "audio", "modalities", "prediction", "reasoning_effort",
        "web_search_options", "verbosity",
    ];

    private static readonly string[] Known = [.. Used, .. Ignored, .. Unsupported];

    /// <summary>The model asked for (any value is accepted with one model served).</summary>
    public string? Model { get; private set; }

    /// <summary>The conversation.</summary>
    public List<ChatMessage> Messages { get; } = new();

    /// <summary>Sampling and length options.</summary>
    public ChatOptions Options { get; } = new();

    /// <summary>Answer as server-sent events.</summary>
    public bool Stream { get; private set; }

    /// <summary>With <see cref="Stream"/>: a last chunk with the usage.</summary>
    public bool IncludeUsage { get; private set; }

    /// <summary>http(s) images to download before answering: (message index, content index, URL).</summary>
    public List<(DataContentSlot Slot, Uri Url)> ImageUrls { get; } = new();

    /// <summary>Where a downloaded image goes.</summary>
    public sealed record DataContentSlot(ChatMessage Message, int Index);

    /// <summary>Reads and checks <paramref name="root"/>.</summary>
    /// <exception cref="OpenAiError">The body breaks a rule (400).</exception>
    public static ChatCompletionRequest Parse(JsonElement root, ServerOptions server)
    {
        if (root.ValueKind != JsonValueKind.Object) throw OpenAiError.BadRequest("The body must be a JSON object.");
        var r = new ChatCompletionRequest();
        foreach (var p in root.EnumerateObject())
        {
            if (Array.IndexOf(Known, p.Name) >= 0) continue;
            var near = Known.Select(k => (k, d: EditDistance(p.Name, k))).Where(x => x.d <= 2).OrderBy(x => x.d).Select(x => x.k).FirstOrDefault();
            if (near is not null)
                throw OpenAiError.BadRequest($"Unknown field '{p.Name}'; did you mean '{near}'?", p.Name, "unknown_field");
        }
        r.CheckUnsupported(root);
        r.Stream = Bool(root, "stream") ?? false;
        if (r.Stream && root.TryGetProperty("stream_options", out var so) && so.ValueKind != JsonValueKind.Null)
        {
            if (so.ValueKind != JsonValueKind.Object) throw WrongType("stream_options", "an object");
            r.IncludeUsage = Bool(so, "include_usage", "stream_options.include_usage") ?? false;
        }
        r.Model = String(root, "model");
        r.ReadOptions(root);
        if (!root.TryGetProperty("messages", out var messages) || messages.ValueKind == JsonValueKind.Null)
            throw OpenAiError.BadRequest("'messages' is required.", "messages", "missing_required_parameter");
        if (messages.ValueKind != JsonValueKind.Array) throw WrongType("messages", "an array");
        if (messages.GetArrayLength() == 0) throw OpenAiError.BadRequest("'messages' must not be empty.", "messages");
        var i = 0;
        foreach (var m in messages.EnumerateArray()) r.Messages.Add(r.Message(m, $"messages[{i++}]", server));
        return r;
    }

    private void CheckUnsupported(JsonElement root)
    {
        foreach (var name in Unsupported)
        {
            if (!root.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) continue;
            var harmless = name switch
            {
                "n" => v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var n) && n == 1,
                "logprobs" => v.ValueKind == JsonValueKind.False,
                "tools" or "functions" => v.ValueKind == JsonValueKind.Array && v.GetArrayLength() == 0,
                "tool_choice" => v.ValueKind == JsonValueKind.String && v.GetString() == "none",
                "response_format" => v.ValueKind == JsonValueKind.Object && v.TryGetProperty("type", out var t) && t.ValueKind == JsonValueKind.String && t.GetString() == "text",
                "frequency_penalty" or "presence_penalty" => v.ValueKind == JsonValueKind.Number && v.GetDouble() == 0,
                "logit_bias" => v.ValueKind == JsonValueKind.Object && !v.EnumerateObject().Any(),
                "modalities" => v.ValueKind == JsonValueKind.Array && v.EnumerateArray().All(x => x.ValueKind == JsonValueKind.String && x.GetString() == "text"),
                _ => false,
            };
            if (harmless) continue;
            var why = name switch
            {
                "n" => "only one choice (n = 1) is generated",
                "response_format" => "only text output is supported",
                "frequency_penalty" or "presence_penalty" => "use 'repetition_penalty' (Hugging Face's) instead",
                "logprobs" or "top_logprobs" => "log probabilities are not returned",
                _ => "this model has no such feature",
            };
            throw OpenAiError.BadRequest($"'{name}' is not supported: {why}.", name, "unsupported_parameter");
        }
    }

    private void ReadOptions(JsonElement root)
    {
        if (Number(root, "temperature") is { } t)
        {
            if (t < 0 || t > 2) throw OpenAiError.BadRequest("'temperature' must be between 0 and 2.", "temperature");
            Options.Temperature = (float)t;
            if (t == 0) Extra("do_sample", false); // OpenAI's temperature 0 is greedy decoding
        }
        if (Number(root, "top_p") is { } p)
        {
            if (p <= 0 || p > 1) throw OpenAiError.BadRequest("'top_p' must be in (0, 1].", "top_p");
            Options.TopP = (float)p;
        }
        var max = Int(root, "max_completion_tokens") ?? Int(root, "max_tokens");
        if (max is { } m)
        {
            if (m <= 0) throw OpenAiError.BadRequest("'max_tokens' must be positive.", root.TryGetProperty("max_completion_tokens", out _) ? "max_completion_tokens" : "max_tokens");
            Options.MaxOutputTokens = m;
        }
        if (Int(root, "seed") is { } seed) Options.Seed = seed;
        if (Int(root, "top_k") is { } k)
        {
            if (k < 0) throw OpenAiError.BadRequest("'top_k' must not be negative.", "top_k");
            Options.TopK = k;
        }
        if (Number(root, "repetition_penalty") is { } rp)
        {
            if (rp <= 0) throw OpenAiError.BadRequest("'repetition_penalty' must be positive.", "repetition_penalty");
            Extra("repetition_penalty", (float)rp);
        }
        if (Int(root, "num_beams") is { } beams)
        {
            if (beams < 1) throw OpenAiError.BadRequest("'num_beams' must be at least 1.", "num_beams");
            Extra("num_beams", beams);
        }
        if (Int(root, "min_tokens") is { } min)
        {
            if (min < 0) throw OpenAiError.BadRequest("'min_tokens' must not be negative.", "min_tokens");
            Extra("min_new_tokens", min);
        }
        if (root.TryGetProperty("stop", out var stop) && stop.ValueKind != JsonValueKind.Null)
        {
            var stops = stop.ValueKind switch
            {
                JsonValueKind.String => [stop.GetString()!],
                JsonValueKind.Array when stop.EnumerateArray().All(s => s.ValueKind == JsonValueKind.String) => stop.EnumerateArray().Select(s => s.GetString()!).ToList(),
                _ => throw WrongType("stop", "a string or an array of strings"),
            };
            if (stops.Count > 4) throw OpenAiError.BadRequest("'stop' takes at most 4 sequences.", "stop");
            if (stops.Any(s => s.Length == 0)) throw OpenAiError.BadRequest("'stop' sequences must not be empty.", "stop");
            Options.StopSequences = stops;
        }
    }

    private void Extra(string key, object value) => (Options.AdditionalProperties ??= new())[key] = value;

    private ChatMessage Message(JsonElement m, string where, ServerOptions server)
    {
        if (m.ValueKind != JsonValueKind.Object) throw WrongType(where, "an object");
        var role = String(m, "role", where + ".role") ?? throw OpenAiError.BadRequest($"'{where}.role' is required.", where + ".role");
        var chatRole = role switch
        {
            "system" or "developer" => ChatRole.System,
            "user" => ChatRole.User,
            "assistant" => ChatRole.Assistant,
            "tool" or "function" => throw OpenAiError.BadRequest($"'{where}.role' '{role}': tools are not supported.", where + ".role", "unsupported_parameter"),
            _ => throw OpenAiError.BadRequest($"'{where}.role' must be system, developer, user or assistant (got '{role}').", where + ".role"),
        };
        if (m.TryGetProperty("tool_calls", out var tc) && tc.ValueKind == JsonValueKind.Array && tc.GetArrayLength() > 0)
            throw OpenAiError.BadRequest($"'{where}.tool_calls': tools are not supported.", where + ".tool_calls", "unsupported_parameter");
        var message = new ChatMessage { Role = chatRole };
        if (!m.TryGetProperty("content", out var content) || content.ValueKind == JsonValueKind.Null)
        {
            if (chatRole == ChatRole.Assistant) return message;
            throw OpenAiError.BadRequest($"'{where}.content' is required.", where + ".content");
        }
        if (content.ValueKind == JsonValueKind.String)
        {
            message.Contents.Add(new TextContent(content.GetString()));
            return message;
        }
        if (content.ValueKind != JsonValueKind.Array) throw WrongType(where + ".content", "a string or an array of parts");
        var j = 0;
        foreach (var part in content.EnumerateArray())
        {
            var at = $"{where}.content[{j++}]";
            if (part.ValueKind != JsonValueKind.Object) throw WrongType(at, "an object");
            var type = String(part, "type", at + ".type");
            switch (type)
            {
                case "text":
                    message.Contents.Add(new TextContent(String(part, "text", at + ".text") ?? throw OpenAiError.BadRequest($"'{at}.text' is required.", at + ".text")));
                    break;
                case "image_url" when chatRole == ChatRole.User:
                    message.Contents.Add(Image(part, at, message, server));
                    break;
                case "image_url":
                    throw OpenAiError.BadRequest($"'{at}': images are accepted in user messages only.", at);
                default:
                    throw OpenAiError.BadRequest($"'{at}.type' '{type}' is not supported (text and image_url only).", at + ".type", "unsupported_parameter");
            }
        }
        return message;
    }

    private AIContent Image(JsonElement part, string at, ChatMessage message, ServerOptions server)
    {
        if (!part.TryGetProperty("image_url", out var iu)) throw OpenAiError.BadRequest($"'{at}.image_url' is required.", at + ".image_url");
        var url = iu.ValueKind switch
        {
            JsonValueKind.String => iu.GetString()!,
            JsonValueKind.Object => String(iu, "url", at + ".image_url.url") ?? throw OpenAiError.BadRequest($"'{at}.image_url.url' is required.", at + ".image_url.url"),
            _ => throw WrongType(at + ".image_url", "an object with 'url'"),
        };
        var param = at + ".image_url.url";
        if (url.StartsWith("data:", StringComparison.OrdinalIgnoreCase))
        {
            var comma = url.IndexOf(',');
            var header = comma < 0 ? "" : url[5..comma];
            if (comma < 0 || !header.EndsWith(";base64", StringComparison.OrdinalIgnoreCase))
                throw OpenAiError.BadRequest($"'{param}': a data URI must be data:image/<type>;base64,<data>.", param, "invalid_image");
            var mediaType = header[..^";base64".Length];
            if (!mediaType.StartsWith("image/", StringComparison.OrdinalIgnoreCase))
                throw OpenAiError.BadRequest($"'{param}': media type '{mediaType}' is not an image.", param, "invalid_image");
            byte[] bytes;
            try { bytes = Convert.FromBase64String(url[(comma + 1)..]); }
            catch (FormatException) { throw OpenAiError.BadRequest($"'{param}': the data URI is not valid base64.", param, "invalid_image"); }
            return new DataContent(bytes, mediaType);
        }
        if (Uri.TryCreate(url, UriKind.Absolute, out var uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps))
        {
            if (!server.AllowedImageHosts.Contains(uri.Host, StringComparer.OrdinalIgnoreCase))
                throw OpenAiError.BadRequest($"'{param}': image URLs are not fetched unless the server allows their host (Server:AllowedImageHosts); send a data URI.", param, "image_url_not_allowed");
            ImageUrls.Add((new DataContentSlot(message, message.Contents.Count), uri));
            return new TextContent(""); // replaced by the downloaded image
        }
        throw OpenAiError.BadRequest($"'{param}' must be a data: URI (or an http(s) URL of an allowed host).", param, "invalid_image");
    }

    private static OpenAiError WrongType(string param, string expected) => OpenAiError.BadRequest($"'{param}' must be {expected}.", param, "invalid_type");

    private static string? String(JsonElement o, string name, string? param = null)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.String ? v.GetString() : throw WrongType(param ?? name, "a string");
    }

    private static bool? Bool(JsonElement o, string name, string? param = null)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind switch { JsonValueKind.True => true, JsonValueKind.False => false, _ => throw WrongType(param ?? name, "true or false") };
    }

    private static double? Number(JsonElement o, string name)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.Number ? v.GetDouble() : throw WrongType(name, "a number");
    }

    private static int? Int(JsonElement o, string name)
    {
        if (!o.TryGetProperty(name, out var v) || v.ValueKind == JsonValueKind.Null) return null;
        return v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : throw WrongType(name, "an integer");
    }

    /// <summary>Levenshtein distance (insertions, deletions, substitutions).</summary>
    internal static int EditDistance(string a, string b)
    {
        var prev = new int[b.Length + 1];
        var cur = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++) prev[j] = j;
        for (var i = 1; i <= a.Length; i++)
        {
            cur[0] = i;
            for (var j = 1; j <= b.Length; j++)
                cur[j] = Math.Min(Math.Min(cur[j - 1] + 1, prev[j] + 1), prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            (prev, cur) = (cur, prev);
        }
        return prev[b.Length];
    }
}
