using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using MiniGpt4.Extensions.Hosting;
using MiniGpt4.Tests.Support;
using MiniGpt4.WebHost;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace MiniGpt4.Tests.Serving;

/// <summary>The web sample started for real on a loopback port (127.0.0.1:0), with the tiny oracle model in float32.</summary>
public sealed class ServingHost : IAsyncDisposable
{
    private ServingHost(WebApplication app)
    {
        App = app;
        BaseAddress = new Uri(app.Urls.Single().TrimEnd('/') + "/");
        Http = new HttpClient { BaseAddress = BaseAddress, Timeout = TimeSpan.FromMinutes(5) };
    }

    public WebApplication App { get; }

    public Uri BaseAddress { get; }

    /// <summary>Raw HTTP to the host (with the API key when one is set).</summary>
    public HttpClient Http { get; }

    public MiniGptModel Model => App.Services.GetRequiredService<MiniGptModel>();

    /// <summary>The tiny Vicuna-0 manifest (skips when shared/ is absent).</summary>
    public static string Manifest => Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json");

    /// <summary>Starts a host; waits for the model unless <paramref name="waitForModel"/> is false.</summary>
    public static async Task<ServingHost> StartAsync(string? model = null, Action<MiniGptModelOptions>? configure = null,
        Action<ServerOptions>? server = null, bool waitForModel = true, string dtype = "float32")
    {
        var app = WebHostApp.Build(["--urls", "http://127.0.0.1:0", "--model", model ?? Manifest, "--dtype", dtype, "Logging:LogLevel:Default=Warning"], configure, server);
        await app.StartAsync();
        var host = new ServingHost(app);
        var key = app.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<ServerOptions>>().Value.ApiKey;
        if (key is not null) host.Http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (waitForModel) await host.Model.WhenReadyAsync().WaitAsync(TimeSpan.FromMinutes(2));
        return host;
    }

    /// <summary>A data URI of an oracle image.</summary>
    public static string DataUri(string image)
    {
        var path = Oracle.Image(image);
        var type = path.EndsWith(".jpg", StringComparison.Ordinal) ? "image/jpeg" : "image/png";
        return $"data:{type};base64,{Convert.ToBase64String(File.ReadAllBytes(path))}";
    }

    /// <summary>A user message with images (data URIs) then text.</summary>
    public static JsonObject User(string text, params string[] imageUris)
    {
        var parts = new JsonArray();
        foreach (var uri in imageUris) parts.Add(new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = uri } });
        parts.Add(new JsonObject { ["type"] = "text", ["text"] = text });
        return new JsonObject { ["role"] = "user", ["content"] = parts };
    }

    /// <summary>POSTs <paramref name="body"/> to /v1/chat/completions.</summary>
    public Task<HttpResponseMessage> PostAsync(JsonNode body, HttpCompletionOption option = HttpCompletionOption.ResponseContentRead, CancellationToken ct = default)
        => PostRawAsync(body.ToJsonString(), option, ct);

    public Task<HttpResponseMessage> PostRawAsync(string body, HttpCompletionOption option = HttpCompletionOption.ResponseContentRead, CancellationToken ct = default)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        return Http.SendAsync(request, option, ct);
    }

    /// <summary>The body of an error response: checks the OpenAI shape and returns <c>error</c>.</summary>
    public static async Task<JsonObject> ErrorAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();
        var error = json["error"]!.AsObject();
        Assert.False(string.IsNullOrWhiteSpace(error["message"]!.GetValue<string>()));
        Assert.True(error.ContainsKey("type") && error.ContainsKey("param") && error.ContainsKey("code"), json.ToJsonString());
        return error;
    }

    /// <summary>Reads server-sent events until [DONE] (or the end): each data payload.</summary>
    public static async IAsyncEnumerable<string> EventsAsync(HttpResponseMessage response, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken ct = default)
    {
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(ct));
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            if (!line.StartsWith("data: ", StringComparison.Ordinal)) continue;
            var data = line["data: ".Length..];
            yield return data;
            if (data == "[DONE]") yield break;
        }
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        await App.StopAsync();
        await App.DisposeAsync();
    }
}
