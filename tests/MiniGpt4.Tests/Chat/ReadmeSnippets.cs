using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using MiniGpt4.Extensions.AI;
using MiniGpt4.Hosting;

namespace MiniGpt4.Tests.Chat;

/// <summary>
/// The README's code, compiled here and run by <see cref="ReadmeSnippetTests"/>, which also checks that each
/// <c>&lt;!-- snippet: NAME --&gt;</c> block of README.md equals the region between <c>// snippet: NAME</c> and
/// <c>// end snippet</c> below (its <c>using</c> lines must be among this file's). Edit both together.
/// </summary>
internal static class ReadmeSnippets
{
    public static async Task IChatClientAsync(MiniGptPipeline pipeline, string photoPath)
    {
        // snippet: ichatclient
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
        // end snippet
    }

    public static void AddChatClient(IServiceCollection services)
    {
        // snippet: ichatclient-di
        services.AddMiniGpt4(o => o.ModelPath = "/models/minigpt4/minigpt4.json");
        services.AddChatClient(sp => sp.GetRequiredService<MiniGptPipeline>().AsIChatClient())
            .UseLogging()
            .UseOpenTelemetry();
        // end snippet
    }

    public static async Task ReplayAndSaveAsync(MiniGptPipeline pipeline, string photoPath, string sessionPath)
    {
        // snippet: replay-save-restore
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
        // end snippet
    }
}
