using System.Text.Json;
using MiniGpt4.Hosting;

namespace MiniGpt4.WebHost;

/// <summary>Builds the sample web application (also used by the tests, on loopback).</summary>
public static class WebHostApp
{
    /// <summary>Largest accepted upload (bytes).</summary>
    public const long MaxUploadBytes = 20 * 1024 * 1024;

    /// <summary>Creates the app: <c>--model</c> names the manifest; other ASP.NET arguments (e.g. <c>--urls</c>) pass through.</summary>
    public static WebApplication Build(string[] args, Action<MiniGptHostingOptions>? configure = null)
    {
        var builder = WebApplication.CreateBuilder(args);
        builder.WebHost.ConfigureKestrel(k => k.Limits.MaxRequestBodySize = MaxUploadBytes + 64 * 1024);
        var model = builder.Configuration["model"];
        builder.Services.AddMiniGpt4(o =>
        {
            o.ModelPath = model ?? "";
            o.Load = new MiniGptLoadOptions
            {
                DType = builder.Configuration["dtype"] == "float32" ? MiniGptDType.Float32 : MiniGptDType.BFloat16,
            };
            configure?.Invoke(o);
        });

        var app = builder.Build();
        // Load the model at start-up, not on the first request.
        app.Lifetime.ApplicationStarted.Register(() => app.Services.GetRequiredService<MiniGptPipeline>());

        app.MapGet("/healthz", () => Results.Ok(new { status = "ok" }));

        app.MapPost("/v1/ask", async (HttpRequest request, MiniGptPipeline pipeline, CancellationToken ct) =>
        {
            var (image, question, options, error) = await ReadAsync(request, ct);
            if (error is not null) return error;
            try
            {
                var r = await pipeline.AskAsync(image!, question!, options, ct);
                return Results.Ok(new
                {
                    text = r.Text,
                    finish_reason = r.FinishReason.ToString().ToLowerInvariant(),
                    usage = new { prompt_tokens = r.Usage.PromptTokens, generated_tokens = r.Usage.GeneratedTokens },
                    timings = new { prefill_ms = r.Timings.PrefillMilliseconds, decode_tokens_per_s = r.Timings.DecodeTokensPerSecond },
                });
            }
            catch (MiniGptImageException ex)
            {
                return Results.Problem(ex.Message, statusCode: StatusCodes.Status422UnprocessableEntity, title: "image refused");
            }
            catch (ArgumentException ex)
            {
                return Results.BadRequest(new { error = ex.Message });
            }
        }).DisableAntiforgery();

        app.MapPost("/v1/ask/stream", async (HttpContext http, MiniGptPipeline pipeline, CancellationToken ct) =>
        {
            var (image, question, options, error) = await ReadAsync(http.Request, ct);
            if (error is not null) { await error.ExecuteAsync(http); return; }
            http.Response.ContentType = "text/event-stream";
            try
            {
                await foreach (var delta in pipeline.StreamAsync(image!, question!, options, ct))
                {
                    await http.Response.WriteAsync($"data: {JsonSerializer.Serialize(delta)}\n\n", ct);
                    await http.Response.Body.FlushAsync(ct);
                }
                await http.Response.WriteAsync("data: [DONE]\n\n", ct);
            }
            catch (MiniGptImageException ex) when (!http.Response.HasStarted)
            {
                await Results.Problem(ex.Message, statusCode: 422, title: "image refused").ExecuteAsync(http);
            }
        }).DisableAntiforgery();

        return app;
    }

    private static async Task<(ImageInput?, string?, GenerationOptions?, IResult?)> ReadAsync(HttpRequest request, CancellationToken ct)
    {
        if (!request.HasFormContentType)
            return (null, null, null, Results.BadRequest(new { error = "send multipart/form-data with 'image' and 'question'" }));
        var form = await request.ReadFormAsync(ct);
        var file = form.Files["image"];
        var question = form["question"].ToString();
        if (file is null || file.Length == 0) return (null, null, null, Results.BadRequest(new { error = "missing 'image' file" }));
        if (file.Length > MaxUploadBytes) return (null, null, null, Results.BadRequest(new { error = $"image over {MaxUploadBytes} bytes" }));
        if (string.IsNullOrWhiteSpace(question)) return (null, null, null, Results.BadRequest(new { error = "missing 'question'" }));
        using var ms = new MemoryStream();
        await file.CopyToAsync(ms, ct);
        var options = new GenerationOptions();
        if (float.TryParse(form["temperature"], System.Globalization.CultureInfo.InvariantCulture, out var t))
            options = t == 0 ? options with { DoSample = false, Temperature = 0 } : options with { Temperature = t };
        if (int.TryParse(form["max_new_tokens"], out var n)) options = options with { MaxNewTokens = n };
        return (ImageInput.FromBytes(ms.ToArray()), question, options, null);
    }
}
