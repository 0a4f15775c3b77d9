using MiniGpt4.Hosting;
using MiniGpt4.Extensions.AI;
using MiniGpt4.Extensions.Hosting;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.AI;
using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace MiniGpt4.Tests.Docs;

/// <summary>
/// The README's C# examples that have a <c>&lt;!-- snippet: name --&gt;</c> marker: each is the <c>#region name</c> below,
/// copied verbatim (ReadmeSnippetTests checks the copies and runs the examples on the tiny oracle models); a README
/// block may start with <c>using</c> lines, which must be among this file's. Edit the code here, then paste the region
/// into README.md.
/// </summary>
public static class ReadmeSnippets
{
    public static void Hosting(IServiceCollection services, IConfiguration configuration)
    {
        #region hosting
        // appsettings.json: { "MiniGpt4": { "ModelPath": "models/minigpt4.json", "DType": "bfloat16", "MaxConcurrentRequests": 8 } }
        services.AddMiniGpt4Model(configuration.GetSection("MiniGpt4"));   // validated at start, loaded in the background
        // then inject MiniGptModel: GetChatClient() answers, or throws MiniGptModelUnavailableException (503) while loading;
        // map the health check (unhealthy while loading or after a failed load) with app.MapHealthChecks("/health")
        #endregion
    }

    public static async Task<IReadOnlyList<MiniGptGroundingBox>> Grounding(string manifestPath, string photoPath)
    {
        #region grounding
        using var pipeline = await MiniGptPipeline.LoadAsync(manifestPath);   // a MiniGPT-v2 model
        var answer = await pipeline.AskAsync(ImageInput.FromFile(photoPath), "[grounding] describe this image in detail");
        // e.g. "<p>a man</p> {<10><20><30><95>} riding <p>a bicycle</p> {<5><40><60><100>}"
        var boxes = answer.GetGroundingBoxes(imageWidth: 640, imageHeight: 480);   // the photo's size in pixels
        foreach (var box in boxes)
            Console.WriteLine($"{box.Phrase ?? "(bare box)"}: ({box.Left:0}, {box.Top:0}) to ({box.Right:0}, {box.Bottom:0})");
        #endregion
        return boxes;
    }

    public static async Task<(List<Activity> Spans, List<Metric> Metrics, MiniGptResponse Answer)> Telemetry(MiniGptPipeline pipeline, string photoPath)
    {
        var spans = new List<Activity>();
        var metrics = new List<Metric>();
        #region telemetry
        using var tracing = Sdk.CreateTracerProviderBuilder()
            .AddSource(MiniGptDiagnostics.SourceName)     // a "chat {model}" span per answer
            .AddInMemoryExporter(spans)                    // or .AddOtlpExporter()
            .Build();
        using var meters = Sdk.CreateMeterProviderBuilder()
            .AddMeter(MiniGptDiagnostics.SourceName)      // gen_ai.server.* and minigpt4.server.*
            .AddInMemoryExporter(metrics)
            .Build();

        var answer = await pipeline.AskAsync(ImageInput.FromFile(photoPath), "Describe this image in detail.");
        #endregion
        meters!.ForceFlush();
        return (spans, metrics, answer);
    }

    public static async Task IChatClientAsync(MiniGptPipeline pipeline, string photoPath)
    {
        #region ichatclient
        IChatClient client = pipeline.AsIChatClient();
        var photo = new DataContent(File.ReadAllBytes(photoPath), "image/jpeg");
        List<ChatMessage> history = [new(ChatRole.User, [photo, new TextContent("What is in the picture?")])];
        ChatResponse answer = await client.GetResponseAsync(history, new ChatOptions { Temperature = 0, MaxOutputTokens = 64 });
        Console.WriteLine($"{answer.Text} [{answer.FinishReason}, {answer.Usage?.InputTokenCount} in, {answer.Usage?.OutputTokenCount} out]");

        // Stateless: send the whole conversation each time. A replayed history reuses the cached keys/values.
        history.AddRange(answer.Messages);
        history.Add(new(ChatRole.User, "What colour is the biggest shape?"));
        await foreach (var update in client.GetStreamingResponseAsync(history))
            Console.Write(update.Text);
        #endregion
    }

    public static void AddChatClient(IServiceCollection services)
    {
        #region ichatclient-di
        services.AddMiniGpt4(o => o.ModelPath = "/models/minigpt4/minigpt4.json");
        services.AddChatClient(sp => sp.GetRequiredService<MiniGptPipeline>().AsIChatClient())
            .UseLogging()
            .UseOpenTelemetry();
        #endregion
    }

    public static async Task ReplayAndSaveAsync(MiniGptPipeline pipeline, string photoPath, string sessionPath)
    {
        #region replay-save-restore
        // A conversation from a system prompt and earlier turns, rendered as if they had been asked live.
        using var session = await pipeline.CreateSessionAsync("You describe pictures for blind readers.",
        [
            ChatTurn.User("What is in the picture?", ImageInput.FromFile(photoPath)),
            ChatTurn.Assistant("A red square and a blue circle on a grey gradient."),
        ]);
        await foreach (var update in session.StreamUpdatesAsync("Which shape is bigger?"))
        {
            Console.Write(update.Text);
            if (update is { FinishReason: { } reason, Usage: { } usage })
                Console.WriteLine($"\n[{reason}: {usage.GeneratedTokens} tokens; {usage.ReusedPromptTokens} of {usage.PromptTokens} prompt positions from the cache]");
        }

        // Save it (turns, image embeddings, key/value cache, the model's identity) ...
        await using (var file = File.Create(sessionPath))
            await session.SaveAsync(file);

        // ... and continue it later, in this process or another, on the same model: the same tokens as without the break.
        await using (var file = File.OpenRead(sessionPath))
        {
            using var restored = await pipeline.RestoreSessionAsync(file); // MiniGptModelMismatchException for another model's file
            var next = await restored.AskAsync("And the smaller one?");
            Console.WriteLine(next.Text);
        }
        #endregion
    }
}
