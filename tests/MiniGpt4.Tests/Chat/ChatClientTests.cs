using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MiniGpt4.Abstractions;
using MiniGpt4.Extensions.AI;
using MiniGpt4.Tests.Pipeline;
using MiniGpt4.Tests.Support;
using Xunit;
using static MiniGpt4.Tests.Chat.ChatReplayTests;

namespace MiniGpt4.Tests.Chat;

/// <summary>The IChatClient of MiniGpt4.Extensions.AI on the tiny oracle model.</summary>
public class ChatClientTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    private static byte[] PngA => File.ReadAllBytes(Oracle.Image("a_gradient_shapes_640x480.png"));

    private static byte[] JpgB => File.ReadAllBytes(Oracle.Image("b_tall_100x300.jpg"));

    /// <summary>The options of <see cref="ChatReplayTests.Greedy12"/> in M.E.AI's terms.</summary>
    private static ChatOptions Greedy => new()
    {
        Temperature = 0, MaxOutputTokens = 12,
        AdditionalProperties = new() { ["repetition_penalty"] = 1.0f, ["use_template_stops"] = false },
    };

    private static ChatMessage User(string text, params byte[][] images) =>
        new(ChatRole.User, [.. images.Select(i => (AIContent)new DataContent(i, "image/png")), new TextContent(text)]);

    [SkippableFact]
    public async Task Streaming_updates_concatenate_to_the_non_streaming_response()
    {
        using var client = tiny.Get("vicuna0").AsIChatClient(new MiniGptChatClientOptions { MaxCachedConversations = 0 });
        List<ChatMessage> messages = [User(Q1, PngA)];
        var response = await client.GetResponseAsync(messages, Greedy);
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in client.GetStreamingResponseAsync(messages, Greedy)) updates.Add(u);
        var streamed = updates.ToChatResponse();

        Assert.Equal(response.Text, streamed.Text);
        Assert.NotEmpty(response.Text);
        Assert.Equal(ChatFinishReason.Length, response.FinishReason);
        Assert.Equal(response.FinishReason, streamed.FinishReason);
        Assert.Equal(response.ModelId, streamed.ModelId);
        Assert.Equal("minigpt4-vicuna0", response.ModelId);
        Assert.Single(response.Messages);
        Assert.Single(streamed.Messages);
        Assert.Equal(ChatRole.Assistant, streamed.Messages[0].Role);
        foreach (var (a, b) in new[] { (response.Usage!, streamed.Usage!) })
        {
            Assert.Equal(a.InputTokenCount, b.InputTokenCount);
            Assert.Equal(a.OutputTokenCount, b.OutputTokenCount);
            Assert.Equal(a.TotalTokenCount, b.TotalTokenCount);
            Assert.Equal(a.CachedInputTokenCount, b.CachedInputTokenCount);
            Assert.Equal(a.AdditionalCounts!["InputImageTokenCount"], b.AdditionalCounts!["InputImageTokenCount"]);
        }
        Assert.Equal(12, response.Usage!.OutputTokenCount);
        Assert.Equal(32, response.Usage.AdditionalCounts!["InputImageTokenCount"]);
        // One response and one message id across every update; finish reason and usage once, on the last.
        Assert.Single(updates.Select(u => u.ResponseId).Distinct());
        Assert.Single(updates.Select(u => u.MessageId).Distinct());
        Assert.NotNull(updates[0].ResponseId);
        Assert.Equal(streamed.ResponseId, updates[0].ResponseId);
        Assert.Equal(updates.Count - 1, updates.FindIndex(u => u.FinishReason is not null));
        Assert.Single(updates.SelectMany(u => u.Contents).OfType<UsageContent>());
        Assert.IsType<UsageContent>(updates[^1].Contents[^1]);

        // The answer is the library's: the same text and tokens as a ChatSession asked the same.
        using var session = tiny.Get("vicuna0").CreateSession();
        await session.AddImageAsync(ImageA);
        var expected = await session.AskAsync(Q1, Greedy12);
        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(expected.TokenIds, updates.SelectMany(u => ((GenerationUpdate[])u.RawRepresentation!).SelectMany(g => g.TokenIds)));
    }

    [SkippableFact]
    public async Task A_replayed_three_turn_history_gives_the_sessions_tokens_and_prefills_only_new_tokens()
    {
        var p = tiny.Get("vicuna0");
        using var live = p.CreateSession();
        await live.AddImageAsync(ImageA);
        var expected = new List<MiniGptResponse>();
        foreach (var q in new[] { Q1, Q2, Q3 }) expected.Add(await live.AskAsync(q, Greedy12));

        using var client = p.AsIChatClient();
        var history = new List<ChatMessage>();
        for (var turn = 0; turn < 3; turn++)
        {
            history.Add(turn == 0 ? User(Q1, PngA) : new ChatMessage(ChatRole.User, turn == 1 ? Q2 : Q3));
            var updates = new List<ChatResponseUpdate>();
            await foreach (var u in client.GetStreamingResponseAsync(history, Greedy)) updates.Add(u);
            var response = updates.ToChatResponse();
            Assert.Equal(expected[turn].Text, response.Text);
            Assert.Equal(expected[turn].TokenIds, updates.SelectMany(u => ((GenerationUpdate[])u.RawRepresentation!).SelectMany(g => g.TokenIds)));
            var usage = response.Usage!;
            Assert.Equal(expected[turn].Usage.PromptTokens, usage.InputTokenCount);
            Assert.Equal(expected[turn].Usage.ReusedPromptTokens, usage.CachedInputTokenCount);
            if (turn > 0)
            {
                // Only what follows the previous answer is prefilled: the cached conversation's positions are reused.
                Assert.Equal(expected[turn].Usage.PrefilledPromptTokens, usage.InputTokenCount - usage.CachedInputTokenCount);
                Assert.True(usage.CachedInputTokenCount > 32, $"reused {usage.CachedInputTokenCount}"); // the system text and the image at least
            }
            history.AddRange(response.Messages);
        }
    }

    [SkippableFact]
    public async Task Eight_concurrent_identical_histories_each_get_the_fresh_answer()
    {
        var p = tiny.Get("vicuna0");
        using var fresh = p.AsIChatClient(new MiniGptChatClientOptions { MaxCachedConversations = 0 });
        List<ChatMessage> first = [User(Q1, PngA)];
        var a1 = await fresh.GetResponseAsync(first, Greedy);
        List<ChatMessage> history = [.. first, .. a1.Messages, new ChatMessage(ChatRole.User, Q2)];
        var expected = await fresh.GetResponseAsync(history, Greedy);

        using var client = p.AsIChatClient();
        await client.GetResponseAsync(first, Greedy); // a cached conversation that every request below would like to reuse
        var answers = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => Task.Run(() => client.GetResponseAsync(history, Greedy))));
        Assert.All(answers, a =>
        {
            Assert.Equal(expected.Text, a.Text);
            Assert.Equal(expected.Usage!.OutputTokenCount, a.Usage!.OutputTokenCount);
            Assert.Equal(expected.Usage.InputTokenCount, a.Usage.InputTokenCount);
        });
        Assert.Contains(answers, a => a.Usage!.CachedInputTokenCount > 0); // the cached conversation was reused, by one request at a time
        // Bounded (how many distinct conversations exist depends on how the eight overlapped: a request that starts after
        // another finished leases the conversation that one put back).
        Assert.InRange(((IChatClient)client).GetService<MiniGptChatClient>()!.CachedConversations, 1, 4);
    }

    [SkippableFact]
    public async Task Images_come_as_bytes_or_data_uris_several_per_message_and_across_messages()
    {
        using var client = tiny.Get("vicuna0").AsIChatClient();
        var bytes = await client.GetResponseAsync([User(Q1, PngA)], Greedy);
        var dataUri = await client.GetResponseAsync(
            [new ChatMessage(ChatRole.User, [new DataContent("data:image/png;base64," + Convert.ToBase64String(PngA)), new TextContent(Q1)])], Greedy);
        Assert.Equal(bytes.Text, dataUri.Text);
        var otherImage = await client.GetResponseAsync([User(Q1, JpgB)], Greedy);
        Assert.NotEqual(bytes.Text, otherImage.Text); // the image reaches the model

        var two = await client.GetResponseAsync([User(Q1, PngA, JpgB)], Greedy);
        Assert.Equal(64, two.Usage!.AdditionalCounts!["InputImageTokenCount"]);
        var across = await client.GetResponseAsync([User(Q1, PngA), .. bytes.Messages, User(Q2, JpgB)], Greedy);
        Assert.Equal(64, across.Usage!.AdditionalCounts!["InputImageTokenCount"]);

        using var live = tiny.Get("vicuna0").CreateSession();
        await live.AddImageAsync(ImageA);
        await live.AddImageAsync(ImageInput.FromBytes(JpgB));
        Assert.Equal((await live.AskAsync(Q1, Greedy12)).Text, two.Text);
    }

    [SkippableFact]
    public async Task File_uris_are_read_only_when_allowed()
    {
        var p = tiny.Get("vicuna0");
        var file = new UriContent(new Uri(Oracle.Image("a_gradient_shapes_640x480.png")), "image/png");
        List<ChatMessage> messages = [new(ChatRole.User, [file, new TextContent(Q1)])];
        using var refusing = p.AsIChatClient();
        var e = await Assert.ThrowsAsync<NotSupportedException>(() => refusing.GetResponseAsync(messages, Greedy));
        Assert.Contains("AllowFileUris", e.Message);
        using var allowing = p.AsIChatClient(new MiniGptChatClientOptions { AllowFileUris = true });
        var viaFile = await allowing.GetResponseAsync(messages, Greedy);
        Assert.Equal((await allowing.GetResponseAsync([User(Q1, PngA)], Greedy)).Text, viaFile.Text);
    }

    [SkippableFact]
    public async Task System_messages_and_instructions_become_the_system_prompt()
    {
        var p = tiny.Get("vicuna0");
        using var client = p.AsIChatClient(new MiniGptChatClientOptions { MaxCachedConversations = 0 });
        var options = Greedy;
        options.Instructions = "Be brief.";
        var response = await client.GetResponseAsync([new ChatMessage(ChatRole.System, "You see images."), User(Q1, PngA)], options);
        using var session = await p.CreateSessionAsync("You see images.\nBe brief.", [ChatTurn.User("", ImageA)]);
        var expected = await session.AskAsync(Q1, Greedy12);
        Assert.Equal(expected.Text, response.Text);
        Assert.Equal(expected.Usage.PromptTokens, response.Usage!.InputTokenCount);
    }

    public static TheoryData<string> UnsupportedContents => new() { "audio", "tool-call", "tool-result", "reasoning", "http-uri", "tool-role", "assistant-image", "system-image", "last-assistant" };

    [SkippableTheory]
    [MemberData(nameof(UnsupportedContents))]
    public async Task Content_the_model_cannot_use_is_refused(string kind)
    {
        using var client = tiny.Get("vicuna0").AsIChatClient();
        List<ChatMessage> messages = kind switch
        {
            "audio" => [new(ChatRole.User, [new DataContent(new byte[] { 1, 2, 3 }, "audio/wav"), new TextContent(Q1)])],
            "tool-call" => [new(ChatRole.User, Q1), new(ChatRole.Assistant, [new FunctionCallContent("c1", "f")]), new(ChatRole.User, Q2)],
            "tool-result" => [new(ChatRole.User, [new FunctionResultContent("c1", "r"), new TextContent(Q1)])],
            "reasoning" => [new(ChatRole.User, Q1), new(ChatRole.Assistant, [new TextReasoningContent("hmm")]), new(ChatRole.User, Q2)],
            "http-uri" => [new(ChatRole.User, [new UriContent(new Uri("https://example.com/a.png"), "image/png"), new TextContent(Q1)])],
            "tool-role" => [new(ChatRole.User, Q1), new(ChatRole.Tool, "result"), new(ChatRole.User, Q2)],
            "assistant-image" => [new(ChatRole.User, Q1), new(ChatRole.Assistant, [new DataContent(PngA, "image/png")]), new(ChatRole.User, Q2)],
            "system-image" => [new(ChatRole.System, [new DataContent(PngA, "image/png")]), new(ChatRole.User, Q1)],
            _ => [new(ChatRole.User, Q1), new(ChatRole.Assistant, "an answer")],
        };
        if (kind == "last-assistant") await Assert.ThrowsAsync<ArgumentException>(() => client.GetResponseAsync(messages, Greedy));
        else await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync(messages, Greedy));
        await Assert.ThrowsAnyAsync<Exception>(async () => { await foreach (var _ in client.GetStreamingResponseAsync(messages, Greedy)) { } });
    }

    [SkippableFact]
    public async Task A_cancelled_request_throws_and_leaves_the_cached_conversations_usable()
    {
        var p = tiny.Get("vicuna0");
        using var client = p.AsIChatClient();
        List<ChatMessage> first = [User(Q1, PngA)];
        var a1 = await client.GetResponseAsync(first, Greedy);
        List<ChatMessage> history = [.. first, .. a1.Messages, new ChatMessage(ChatRole.User, Q2)];
        using var cts = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in client.GetStreamingResponseAsync(history, Greedy, cts.Token)) cts.Cancel();
        });
        var miniGpt = client.GetService<MiniGptChatClient>()!;
        Assert.Equal(0, miniGpt.CachedConversations); // the leased conversation was in an unknown state: freed, not returned
        Assert.Equal(0, p.ActiveRequests);
        using var fresh = p.AsIChatClient(new MiniGptChatClientOptions { MaxCachedConversations = 0 });
        Assert.Equal((await fresh.GetResponseAsync(history, Greedy)).Text, (await client.GetResponseAsync(history, Greedy)).Text);
    }

    [SkippableFact]
    public async Task GetService_hands_out_the_metadata_and_the_pipeline()
    {
        var p = tiny.Get("vicuna0");
        using var client = p.AsIChatClient(new MiniGptChatClientOptions { ModelId = "my-minigpt" });
        var metadata = client.GetService<ChatClientMetadata>()!;
        Assert.Equal("minigpt4", metadata.ProviderName);
        Assert.Equal("my-minigpt", metadata.DefaultModelId);
        Assert.Same(p, client.GetService<MiniGptPipeline>());
        Assert.Null(client.GetService<MiniGptPipeline>("key"));
        Assert.Null(client.GetService<string>());
        Assert.Equal("my-minigpt", (await client.GetResponseAsync([User(Q1, PngA)], Greedy)).ModelId);
        await Task.CompletedTask;
    }

    [SkippableFact]
    public async Task It_works_under_logging_and_OpenTelemetry_middleware_and_from_dependency_injection()
    {
        var p = tiny.Get("vicuna0");
        var spans = new ConcurrentQueue<Activity>();
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name.Contains("Microsoft.Extensions.AI", StringComparison.Ordinal),
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Enqueue,
        };
        ActivitySource.AddActivityListener(listener);
        var logs = new ListLoggerFactory();
        using var inner = p.AsIChatClient();
        using var client = inner.AsBuilder().UseLogging(logs).UseOpenTelemetry().Build();
        var response = await client.GetResponseAsync([User(Q1, PngA)], Greedy);
        var streamed = await client.GetStreamingResponseAsync([User(Q1, PngA)], Greedy).ToChatResponseAsync();
        Assert.Equal(response.Text, streamed.Text);
        Assert.Same(p, client.GetService<MiniGptPipeline>());
        Assert.Equal("minigpt4-vicuna0", client.GetService<ChatClientMetadata>()!.DefaultModelId);
        Assert.NotEmpty(logs.Messages);
        var chat = spans.Where(s => s.DisplayName == "chat minigpt4-vicuna0").ToList();
        Assert.Equal(2, chat.Count);
        Assert.All(chat, s =>
        {
            Assert.Equal(response.Usage!.InputTokenCount, Convert.ToInt64(s.GetTagItem("gen_ai.usage.input_tokens")));
            Assert.Equal(12L, Convert.ToInt64(s.GetTagItem("gen_ai.usage.output_tokens")));
        });

        var services = new ServiceCollection();
        services.AddSingleton(p); // the test fixture owns the pipeline
        services.AddChatClient(sp => sp.GetRequiredService<MiniGptPipeline>().AsIChatClient()).UseLogging(logs).UseOpenTelemetry();
        await using var provider = services.BuildServiceProvider();
        var fromDi = provider.GetRequiredService<IChatClient>();
        Assert.Equal(response.Text, (await fromDi.GetResponseAsync([User(Q1, PngA)], Greedy)).Text);
    }

    private sealed class ListLoggerFactory : ILoggerFactory, ILogger
    {
        public ConcurrentQueue<string> Messages { get; } = new();
        public ILogger CreateLogger(string categoryName) => this;
        public void AddProvider(ILoggerProvider provider) { }
        public void Dispose() { }
        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;
        public bool IsEnabled(LogLevel logLevel) => true;
        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            => Messages.Enqueue(formatter(state, exception));
    }
}
