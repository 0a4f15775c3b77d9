using MiniGpt4.Abstractions;
using MiniGpt4.Prompting;
using MiniGpt4.Tests.Pipeline;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Chat;

/// <summary>
/// Sessions built from a system prompt and earlier turns: rendered exactly as the same turns asked live, reusing images
/// and the cache's longest common prefix; the streaming member with finish reason and usage.
/// </summary>
public class ChatReplayTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    internal const string Q1 = "Describe this image in detail.";
    internal const string Q2 = "What colour is the biggest shape?";
    internal const string Q3 = "And the smallest one?";

    internal static GenerationOptions Greedy12 => GenerationOptions.Greedy with { MaxNewTokens = 12, UseTemplateStops = false };

    internal static ImageInput ImageA => ImageInput.FromFile(Oracle.Image("a_gradient_shapes_640x480.png"));

    [SkippableTheory]
    [InlineData("vicuna0")]
    [InlineData("llama2")]
    [InlineData("minigptv2")]
    public async Task A_replayed_history_gives_the_prompt_and_tokens_of_the_live_conversation(string variant)
    {
        var p = tiny.Get(variant);
        using var live = p.CreateSession();
        await live.AddImageAsync(ImageA);
        var a1 = await live.AskAsync(Q1, Greedy12);
        var a2 = await live.AskAsync(Q2, Greedy12);

        using var replayed = await p.CreateSessionAsync(null, [ChatTurn.User(Q1, ImageA), ChatTurn.Assistant(a1.Text)]);
        Assert.Equal(live.History.Take(2), replayed.History);
        var r2 = await replayed.AskAsync(Q2, Greedy12);
        Assert.Equal(a2.Prompt, r2.Prompt);
        Assert.Equal(a2.TokenIds, r2.TokenIds);
        Assert.Equal(a2.SegmentIds, r2.SegmentIds);
    }

    [SkippableFact]
    public async Task Replacing_the_history_keeps_the_images_and_the_common_prefix_of_the_cache()
    {
        var p = tiny.Get("vicuna0");
        using var live = p.CreateSession();
        await live.AddImageAsync(ImageA);
        var a1 = await live.AskAsync(Q1, Greedy12);
        var a2 = await live.AskAsync(Q2, Greedy12);

        using var session = p.CreateSession();
        await session.AddImageAsync(ImageA);
        Assert.Equal(a1.TokenIds, (await session.AskAsync(Q1, Greedy12)).TokenIds);
        // The same history replayed with a new ImageInput of the same file: nothing is encoded again, the cache is kept.
        await session.ReplaceHistoryAsync(null, [ChatTurn.User(Q1, ImageA), ChatTurn.Assistant(a1.Text)]);
        var r2 = await session.AskAsync(Q2, Greedy12);
        Assert.Equal(a2.TokenIds, r2.TokenIds);
        Assert.Equal(a2.Usage, r2.Usage);
        Assert.True(r2.Usage.ReusedPromptTokens > 32, $"reused {r2.Usage.ReusedPromptTokens}");
    }

    [SkippableFact]
    public async Task A_system_prompt_takes_the_place_of_the_templates()
    {
        var p = tiny.Get("vicuna0");
        using var session = await p.CreateSessionAsync("You answer in one word.", [ChatTurn.User("", ImageA)]);
        Assert.Equal("You answer in one word.", session.SystemPrompt);
        var r = await session.AskAsync(Q1, Greedy12);
        Assert.Equal("You answer in one word.###Human: <Img><ImageHere></Img> " + Q1 + "###Assistant: ", r.Prompt);
        using var plain = p.CreateSession();
        Assert.StartsWith("Give the following image", plain.SystemPrompt);
    }

    [SkippableFact]
    public async Task Streamed_updates_concatenate_to_the_answer_and_the_last_carries_finish_reason_and_usage()
    {
        var p = tiny.Get("vicuna0");
        using var session = p.CreateSession();
        await session.AddImageAsync(ImageA);
        var updates = new List<GenerationUpdate>();
        await foreach (var u in session.StreamUpdatesAsync(Q1, Greedy12)) updates.Add(u);
        var answer = session.LastResponse!;
        Assert.Equal(answer.Text, string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(answer.TokenIds, updates.SelectMany(u => u.TokenIds));
        Assert.All(updates.SkipLast(1), u => Assert.Null(u.FinishReason));
        var last = updates[^1];
        Assert.Equal(MiniGptFinishReason.Length, last.FinishReason);
        Assert.Equal(answer.Usage, last.Usage);
        Assert.Equal(32, last.Usage!.ImagePromptTokens);
        Assert.Equal(12, last.Usage.GeneratedTokens);
        Assert.Equal(answer.Timings, last.Timings);
        Assert.True(last.Timings!.ImageEncodeMilliseconds > 0);

        var fromPipeline = new List<GenerationUpdate>();
        await foreach (var u in p.StreamUpdatesAsync(ImageA, Q1, Greedy12)) fromPipeline.Add(u);
        Assert.Equal(answer.Text, string.Concat(fromPipeline.Select(u => u.Text)));
        Assert.Equal(answer.Usage, fromPipeline[^1].Usage);
    }

    [Theory]
    [InlineData(new[] { "  Hel", "lo ", " wor", "ld  \n" }, "Hello  world")]
    [InlineData(new[] { " Assis", "tant: Hi", " there" }, "Hi there")]
    [InlineData(new[] { "A", " cat" }, "A cat")]
    [InlineData(new[] { "Assistant", ":" }, "")]
    [InlineData(new[] { "\u001c x \u001f" }, "x")]
    public void The_clean_stream_sends_what_the_final_clean_up_keeps(string[] cutDeltas, string answer)
    {
        var clean = new AnswerStreamClean();
        var sent = string.Concat(cutDeltas.Select(clean.Push));
        Assert.Equal(answer, AnswerPostProcessor.Process(string.Concat(cutDeltas)));
        sent += clean.Finish(answer);
        Assert.Equal(answer, sent);
        Assert.True(clean.ConcatenatesToAnswer);
    }

    [Fact]
    public void The_clean_stream_cannot_take_back_text_sent_before_a_late_role_marker()
    {
        var clean = new AnswerStreamClean();
        var sent = clean.Push("Hi ") + clean.Push("Assistant: there");
        var answer = AnswerPostProcessor.Process("Hi Assistant: there");
        Assert.Equal("there", answer);
        sent += clean.Finish(answer);
        Assert.Equal("Hi", sent);
        Assert.False(clean.ConcatenatesToAnswer);
    }

    [SkippableFact]
    public async Task A_failed_replacement_leaves_the_session_as_it_was()
    {
        var p = tiny.Get("vicuna0");
        using var session = p.CreateSession();
        await session.AddImageAsync(ImageA);
        var a1 = await session.AskAsync(Q1, Greedy12);
        var history = session.History;
        await Assert.ThrowsAsync<MiniGptImageException>(() => session.ReplaceHistoryAsync("x",
            [ChatTurn.User(Q1, ImageA), ChatTurn.User(Q2, ImageInput.FromBytes(new byte[] { 1, 2, 3 }))]));
        Assert.Equal(history, session.History);
        var a2 = await session.AskAsync(Q2, Greedy12);
        using var live = p.CreateSession();
        await live.AddImageAsync(ImageA);
        await live.AskAsync(Q1, Greedy12);
        Assert.Equal((await live.AskAsync(Q2, Greedy12)).TokenIds, a2.TokenIds);
        Assert.Equal(a1.Text, session.History[1].Text);
    }
}
