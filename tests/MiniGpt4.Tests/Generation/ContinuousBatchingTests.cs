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

    /// <summary>
    /// A long prompt arriving while another answer runs is prefilled in parts, and the running answer steps between the
    /// parts instead of waiting for the whole prompt; both answers are still their solo answers (the decoder's prefill,
    /// the default for bf16 on a CPU without AVX512-BF16, changes no number when split).
    /// </summary>
    [SkippableFact]
    public async Task A_long_prompt_is_prefilled_in_parts_while_a_running_answer_keeps_stepping()
    {
        var manifest = Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json");
        using var pipeline = await MiniGptPipeline.LoadAsync(manifest, new MiniGptLoadOptions
        {
            DType = MiniGptDType.BFloat16,
            Images = new ImageDecodingOptions { Decoder = SkiaImageDecoder.Instance },
        });
        var lm = (MiniGpt4.Models.LlamaLanguageModel)pipeline.LanguageModel;
        lm.Model.DecoderPrefill = true;
        Skip.If(lm.PrefillChunkPositions == 0, "the CPU decoder (AVX-512F or AVX2 + FMA) is not available here");
        var question = string.Join(" ", Enumerable.Repeat("Describe every colour, every shape and every corner you can see.", 10));
        var longOptions = GenerationOptions.Greedy with { MaxNewTokens = 12, UseTemplateStops = false };
        var runningOptions = GenerationOptions.Greedy with { MaxNewTokens = 400, MinNewTokens = 400, UseTemplateStops = false };

        int[] soloLong, soloRunning;
        using (var s = await OpenAsync(pipeline, 1)) soloLong = (await s.AskAsync(question, longOptions)).TokenIds.ToArray();
        using (var s = await OpenAsync(pipeline, 0)) soloRunning = (await s.AskAsync(Questions[0], runningOptions)).TokenIds.ToArray();

        using var running = await OpenAsync(pipeline, 0);
        using var arriving = await OpenAsync(pipeline, 1);
        await using var updates = running.StreamUpdatesAsync(Questions[0], runningOptions).GetAsyncEnumerator();
        Assert.True(await updates.MoveNextAsync());
        var ids = new List<int>(updates.Current.TokenIds);
        var reader = Task.Run(async () =>
        {
            while (await updates.MoveNextAsync()) ids.AddRange(updates.Current.TokenIds);
        });
        var before = pipeline.Engine.StepsDuringPrefill;
        var answer = await arriving.AskAsync(question, longOptions);
        var between = pipeline.Engine.StepsDuringPrefill - before;
        await reader;
        output.WriteLine($"prompt parts of {lm.PrefillChunkPositions} positions; steps of the running answer between them: {between}");
        Assert.True(between >= 2, $"the running answer stepped {between} times while the long prompt was prefilled");
        Assert.Equal(soloLong, answer.TokenIds);
        Assert.Equal(soloRunning, ids);
    }
}
