using MiniGpt4.Imaging.Skia;
using MiniGpt4.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt4.Tests.Generation;

/// <summary>The tiny oracle MiniGPT-4 (Vicuna template) in float32 and in bfloat16, loaded once for the batching tests.</summary>
public sealed class TinyByDType : IDisposable
{
    private readonly Dictionary<MiniGptDType, MiniGptPipeline> _pipelines = new();

    public MiniGptPipeline Get(MiniGptDType dtype)
    {
        lock (_pipelines)
        {
            if (_pipelines.TryGetValue(dtype, out var p)) return p;
            var manifest = Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json");
            p = MiniGptPipeline.LoadAsync(manifest, new MiniGptLoadOptions
            {
                DType = dtype,
                Images = new ImageDecodingOptions { Decoder = SkiaImageDecoder.Instance },
            }).GetAwaiter().GetResult();
            _pipelines[dtype] = p;
            return p;
        }
    }

    public void Dispose()
    {
        foreach (var p in _pipelines.Values) p.Dispose();
    }
}

/// <summary>
/// Continuous batching (the engine's scheduler): conversations that run at the same time are decoded in one batched
/// step, and each one's tokens must be exactly what it gets alone (docs/batching.md), in float32 and bfloat16.
/// </summary>
public sealed class ContinuousBatchingTests(TinyByDType tiny, ITestOutputHelper output) : IClassFixture<TinyByDType>
{
    private static readonly string[] Images =
        ["a_gradient_shapes_640x480.png", "b_tall_100x300.jpg", "c_square_224x224.png", "d_rgba_300x180.png", "e_gray_50x40.png"];

    private static readonly string[] Questions =
    [
        "Describe this image in detail.", "What colour dominates?", "Is there a circle?", "Tell me a short story about it.",
        "What is in the corner?", "How many shapes are there?", "Write a poem.", "Why?",
    ];

    /// <summary>
    /// Eight different requests: images, questions, lengths; two with beams (2 and 3), one sampled with its own seed,
    /// some stopping on the template's separator and some only on EOS or the length.
    /// </summary>
    private static GenerationOptions OptionsFor(int i) => i switch
    {
        2 => GenerationOptions.Greedy with { NumBeams = 2, MaxNewTokens = 9, UseTemplateStops = false },
        5 => GenerationOptions.Greedy with { NumBeams = 3, MaxNewTokens = 12 },
        6 => new GenerationOptions { DoSample = true, Temperature = 0.8f, TopK = 30, TopP = 0.9f, Seed = 4242 + i, MaxNewTokens = 14, UseTemplateStops = false },
        _ => GenerationOptions.Greedy with { MaxNewTokens = 6 + 3 * i, MinNewTokens = i % 2 == 0 ? 6 + 3 * i : 0, UseTemplateStops = i % 3 != 0 },
    };

    private sealed record Answer(int[] Ids, MiniGptFinishReason? Finish);

    /// <summary>Encodes the image of conversation <paramref name="i"/> into a fresh session (outside the measured turn).</summary>
    private static async Task<ChatSession> OpenAsync(MiniGptPipeline pipeline, int i)
    {
        var session = pipeline.CreateSession();
        await session.AddImageAsync(ImageInput.FromFile(Oracle.Image(Images[i % Images.Length])));
        return session;
    }

    private static async Task<Answer> AskAsync(ChatSession session, int i, Func<int, bool>? cancelAfter = null, CancellationTokenSource? cts = null)
    {
        var ids = new List<int>();
        MiniGptFinishReason? finish = null;
        await foreach (var u in session.StreamUpdatesAsync(Questions[i], OptionsFor(i), cts?.Token ?? default))
        {
            ids.AddRange(u.TokenIds);
            finish = u.FinishReason ?? finish;
            if (cancelAfter?.Invoke(ids.Count) == true) cts!.Cancel();
        }
        return new Answer([.. ids], finish);
    }

    private async Task<Answer[]> SoloAsync(MiniGptPipeline pipeline, int count)
    {
        var solo = new Answer[count];
        for (var i = 0; i < count; i++)
        {
            using var session = await OpenAsync(pipeline, i);
            solo[i] = await AskAsync(session, i);
        }
        return solo;
    }

    [SkippableTheory]
    [InlineData(MiniGptDType.Float32)]
    [InlineData(MiniGptDType.BFloat16)]
    public async Task Eight_concurrent_conversations_get_their_solo_answers_token_for_token(MiniGptDType dtype)
    {
        var pipeline = tiny.Get(dtype);
        const int count = 8;
        var solo = await SoloAsync(pipeline, count);

        var sessions = new ChatSession[count];
        for (var i = 0; i < count; i++) sessions[i] = await OpenAsync(pipeline, i);
        var sharedBefore = pipeline.Engine.SharedSteps;
        try
        {
            var batched = await Task.WhenAll(Enumerable.Range(0, count).Select(i => Task.Run(() => AskAsync(sessions[i], i))));
            for (var i = 0; i < count; i++)
            {
                output.WriteLine($"{dtype} #{i}: {solo[i].Ids.Length} tokens ({solo[i].Finish}), options {OptionsFor(i).NumBeams} beams");
                Assert.Equal(solo[i].Finish, batched[i].Finish);
                Assert.Equal(solo[i].Ids, batched[i].Ids);
            }
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
        }
        var shared = pipeline.Engine.SharedSteps - sharedBefore;
        output.WriteLine($"{shared} decode steps ran several conversations in one forward");
        Assert.True(shared > 0, "the concurrent conversations were never decoded in one step");
    }

    [SkippableTheory]
    [InlineData(MiniGptDType.Float32)]
    [InlineData(MiniGptDType.BFloat16)]
    public async Task A_conversation_cancelled_mid_batch_leaves_the_others_tokens_unchanged(MiniGptDType dtype)
    {
        var pipeline = tiny.Get(dtype);
        const int count = 5, cancelled = 4; // #4: 18 greedy tokens at least; cancelled after its third
        var solo = await SoloAsync(pipeline, count);

        var sessions = new ChatSession[count];
        for (var i = 0; i < count; i++) sessions[i] = await OpenAsync(pipeline, i);
        using var cts = new CancellationTokenSource();
        var sharedBefore = pipeline.Engine.SharedSteps;
        try
        {
            var tasks = Enumerable.Range(0, count).Select(i => Task.Run(() => i == cancelled
                ? AskAsync(sessions[i], i, n => n >= 3, cts)
                : AskAsync(sessions[i], i))).ToArray();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => tasks[cancelled]);
            for (var i = 0; i < count; i++)
                if (i != cancelled) Assert.Equal(solo[i].Ids, (await tasks[i]).Ids);

            Assert.True(pipeline.Engine.SharedSteps > sharedBefore, "the conversations were never decoded in one step");
            // The cancelled conversation's history and cache are as before: asking again gives its solo answer.
            Assert.Equal(solo[cancelled].Ids, (await AskAsync(sessions[cancelled], cancelled)).Ids);
        }
        finally
        {
            foreach (var s in sessions) s.Dispose();
        }
    }

    /// <summary>
    /// A caller that stops reading holds back its own answer, not the others: it can run at most
    /// <c>ScheduledAnswer.MaxUnreadUpdates</c> updates ahead, so with 200 tokens to go it is still running (its slot held)
    /// whatever the machine's speed; another conversation is answered meanwhile; read to the end, the paused answer is
    /// its solo answer.
    /// </summary>
    [SkippableFact]
    public async Task A_reader_that_stops_reading_pauses_only_its_own_answer()
    {
        var pipeline = tiny.Get(MiniGptDType.Float32);
        var options = GenerationOptions.Greedy with { MaxNewTokens = 200, MinNewTokens = 200, UseTemplateStops = false };
        int[] solo;
        using (var s = await OpenAsync(pipeline, 0))
            solo = (await s.AskAsync(Questions[0], options)).TokenIds.ToArray();

        using var slow = await OpenAsync(pipeline, 0);
        await using var updates = slow.StreamUpdatesAsync(Questions[0], options).GetAsyncEnumerator();
        Assert.True(await updates.MoveNextAsync());
        var ids = new List<int>(updates.Current.TokenIds);

        using (var other = await OpenAsync(pipeline, 1))
        {
            var answer = await AskAsync(other, 1);
            Assert.NotEmpty(answer.Ids);
        }
        Assert.Equal(1, pipeline.ActiveRequests); // the unread answer cannot have finished: it waits for its reader

        while (await updates.MoveNextAsync()) ids.AddRange(updates.Current.TokenIds);
        Assert.Equal(solo, ids);
    }
}
