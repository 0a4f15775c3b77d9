using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using MiniGpt4.Extensions.Hosting;
using OpenTelemetry.Metrics;

namespace MiniGpt4.WebHost;

/// <summary>
/// Builds the sample server (also used by the tests, on loopback): an OpenAI-compatible <c>/v1/chat/completions</c> with
/// images, <c>/v1/models</c>, <c>/health</c>, <c>/metrics</c> and a chat page at <c>/</c>. docs/serving.md describes it.
/// </summary>
public static class WebHostApp
{
    /// <summary>The configuration section of the model (<see cref="MiniGptModelOptions"/>).</summary>
    public const string ModelSection = "MiniGpt4";

    /// <summary>The configuration section of the HTTP side (<see cref="ServerOptions"/>).</summary>
    public const string ServerSection = "Server";

    /// <summary>The folder, next to the app's assembly, of the model used when none is configured.</summary>
    public const string ToyModelFolder = "toy-model";

    /// <summary>
    /// Creates the app. <c>--model</c> (a manifest or its folder; relative to the current directory) and
    /// <c>--dtype float32|bfloat16|float16</c> override the <c>MiniGpt4</c> section; other ASP.NET arguments (<c>--urls</c>)
    /// pass through. Without a model anywhere, the bundled toy model (<c>toy-model/minigpt4.json</c> next to the app) is used.
    /// </summary>
    /// <exception cref="MiniGptConfigurationException">No model is configured and no toy model is bundled.</exception>
    public static WebApplication Build(string[] args, Action<MiniGptModelOptions>? configure = null, Action<ServerOptions>? server = null)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
        ApplyCommandLine(builder.Configuration);
        var serverOptions = builder.Configuration.GetSection(ServerSection).Get<ServerOptions>() ?? new ServerOptions();
        server?.Invoke(serverOptions);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = serverOptions.MaxRequestBodyBytes);
        builder.Services.AddSingleton(Options.Create(serverOptions));
        builder.Services.AddMiniGpt4Model(builder.Configuration.GetSection(ModelSection), configure);
        builder.Services.AddHttpClient("images", c => c.Timeout = TimeSpan.FromSeconds(30));
        builder.Services.AddOpenTelemetry().WithMetrics(m => m
            .AddMeter(MiniGptDiagnostics.SourceName, "Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel")
            .AddPrometheusExporter());
        if (serverOptions.CorsOrigins.Length > 0)
            builder.Services.AddCors(c => c.AddDefaultPolicy(p => p.WithOrigins(serverOptions.CorsOrigins).AllowAnyHeader().WithMethods("GET", "POST")));

        var app = builder.Build();
        if (serverOptions.CorsOrigins.Length > 0) app.UseCors();
        app.Use(RefuseWhileDraining);
        app.Use(RequireApiKey);
        app.UseDefaultFiles();
        app.UseStaticFiles();

        app.MapPost("/v1/chat/completions", ChatCompletionsEndpoint.HandleAsync);
        app.MapGet("/v1/models", (MiniGptModel model) => Results.Json(new
        {
            @object = "list",
            data = new[] { new { id = model.ModelId, @object = "model", created = 0, owned_by = "minigpt4", ready = model.State == MiniGptModelState.Ready } },
        }));
        var health = new HealthCheckOptions { ResponseWriter = WriteHealthAsync };
        app.MapHealthChecks("/health", health);
        app.MapHealthChecks("/healthz", health);
        app.MapPrometheusScrapingEndpoint("/metrics");
        app.MapFallback("/v1/{**rest}", (HttpContext http) => new OpenAiError(404, $"No endpoint {http.Request.Method} {http.Request.Path}.", code: "not_found").WriteAsync(http.Response));
        return app;
    }

    /// <summary>
    /// The sample's own flags: <c>--model</c> becomes <c>MiniGpt4:ModelPath</c> (made absolute against the current
    /// directory now, whatever the content root), <c>--dtype</c> becomes <c>MiniGpt4:DType</c>; with no model configured,
    /// the bundled toy model.
    /// </summary>
    private static void ApplyCommandLine(ConfigurationManager configuration)
    {
        var overrides = new Dictionary<string, string?>();
        if (configuration["model"] is { Length: > 0 } model) overrides[$"{ModelSection}:ModelPath"] = Path.GetFullPath(model);
        if (configuration["dtype"] is { Length: > 0 } dtype) overrides[$"{ModelSection}:DType"] = dtype;
        if (!overrides.ContainsKey($"{ModelSection}:ModelPath") && string.IsNullOrWhiteSpace(configuration[$"{ModelSection}:ModelPath"]))
            overrides[$"{ModelSection}:ModelPath"] = ToyModel();
        configuration.AddInMemoryCollection(overrides);
    }

    /// <summary>The bundled toy model's manifest.</summary>
    /// <exception cref="MiniGptConfigurationException">It is not there.</exception>
    public static string ToyModel()
    {
        var manifest = Path.Combine(AppContext.BaseDirectory, ToyModelFolder, "minigpt4.json");
        if (File.Exists(manifest)) return manifest;
        throw new MiniGptConfigurationException(
            $"No model given: pass --model <minigpt4.json> (or set {ModelSection}:ModelPath); no bundled toy model was found at {manifest}.");
    }

    private static async Task RefuseWhileDraining(HttpContext http, Func<Task> next)
    {
        var lifetime = http.RequestServices.GetRequiredService<IHostApplicationLifetime>();
        if (lifetime.ApplicationStopping.IsCancellationRequested && http.Request.Path.StartsWithSegments("/v1"))
        {
            await new OpenAiError(503, "The server is shutting down; retry on another replica.", "server_error", code: "shutting_down") { RetryAfterSeconds = 1 }
                .WriteAsync(http.Response);
            return;
        }
        await next();
    }

    private static async Task RequireApiKey(HttpContext http, Func<Task> next)
    {
        var key = http.RequestServices.GetRequiredService<IOptions<ServerOptions>>().Value.ApiKey;
        if (!string.IsNullOrEmpty(key) && http.Request.Path.StartsWithSegments("/v1"))
        {
            var given = http.Request.Headers.Authorization.ToString();
            var expected = "Bearer " + key;
            if (!System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(
                    System.Text.Encoding.UTF8.GetBytes(given), System.Text.Encoding.UTF8.GetBytes(expected)))
            {
                http.Response.Headers.WWWAuthenticate = "Bearer";
                await new OpenAiError(401, "Missing or wrong API key: send Authorization: Bearer <key>.", code: "invalid_api_key").WriteAsync(http.Response);
                return;
            }
        }
        await next();
    }

    private static Task WriteHealthAsync(HttpContext http, HealthReport report)
    {
        http.Response.ContentType = "application/json";
        return http.Response.WriteAsync(JsonSerializer.Serialize(new
        {
            status = report.Status.ToString(),
            checks = report.Entries.Select(e => new { name = e.Key, status = e.Value.Status.ToString(), description = e.Value.Description }),
        }));
    }
}
