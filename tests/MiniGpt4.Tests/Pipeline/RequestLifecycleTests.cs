using MiniGpt4.Models;
using MiniGpt4.Tests.Support;
using TorchSharp;
using Xunit;
using static MiniGpt4.Tests.Pipeline.OracleChat;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>
/// The request lifecycle inside a host: disposal while requests run, abandoned and interleaved streams,
/// cancellation, admission (queue, memory budget, eviction), hostile prompts and broken weights. Each test
/// loads its own tiny pipeline where it changes or disposes it.
/// </summary>
public class RequestLifecycleTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(60);

    private static MiniGptPipeline Load(MiniGptLoadOptions? options = null, string variant = "vicuna0") =>
        MiniGptPipeline.LoadAsync(Fixtures.Require($"oracle/tiny/minigpt4-{variant}.json"),
            (options ?? TinyPipelines.Float32Exact) with { DType = MiniGptDType.Float32, Images = TinyPipelines.Float32Exact.Images }).GetAwaiter().GetResult();

    /// <summary>
    /// Live tensors a plain load and dispose leave in TorchSharp's count: one per disposed Parameter, whose
    /// storage is freed (a TorchSharp accounting quirk). A leak shows as more than this.
    /// </summary>
    private static async Task<long> LoadDisposeResidue()
    {
        var before = LiveTensors.Settled();
        (await MiniGptPipeline.LoadAsync(Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json"), TinyPipelines.Float32Exact)).Dispose();
        return LiveTensors.Settled() - before;
    }

    [SkippableFact]
    public async Task Disposing_the_pipeline_while_requests_run_ends_them_with_ObjectDisposedException()
    {
        var residue = await LoadDisposeResidue();
        var before = LiveTensors.Settled();
        var p = Load();
        var long400 = GenerationOptions.Greedy with { MaxNewTokens = 400, UseTemplateStops = false };
        var started = Enumerable.Range(0, 4).Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToArray();
        var sessions = Enumerable.Range(0, 4).Select(_ => p.CreateSession()).ToArray();
        foreach (var s in sessions) await s.AddImageAsync(ImageA);
        var runs = sessions.Select((s, i) => Task.Run(async () =>
        {
            await foreach (var _ in s.StreamAsync(Question, long400)) started[i].TrySetResult();
        })).ToArray();
        await Task.WhenAll(started.Select(t => t.Task)).WaitAsync(HangGuard);

        p.Dispose(); // from another thread than the running steps; waits for the step in flight

        foreach (var run in runs)
        {
            var ex = await Record.ExceptionAsync(() => run.WaitAsync(HangGuard));
            Assert.True(ex is null or ObjectDisposedException or OperationCanceledException, ex?.ToString());
        }
        await Assert.ThrowsAsync<ObjectDisposedException>(() => p.AskAsync(ImageA, Question, Greedy20));
        Assert.Throws<ObjectDisposedException>(() => p.CreateSession());
        await Assert.ThrowsAsync<ObjectDisposedException>(() => sessions[0].AskAsync("Again?", Greedy20));
        Assert.Throws<ObjectDisposedException>(() => sessions[1].AddImage(ImageA));
        p.Dispose(); // a second dispose is silent
        foreach (var s in sessions) s.Dispose();
        Assert.Equal(before + residue, LiveTensors.Settled());
    }

    [SkippableFact]
    public async Task A_stream_read_once_and_dropped_blocks_nobody()
    {
        var p = tiny.Get("vicuna0");
        using var dropped = p.CreateSession();
        dropped.AddImage(ImageA);
        var e = dropped.StreamAsync(Question, GenerationOptions.Greedy with { MaxNewTokens = 300, UseTemplateStops = false }).GetAsyncEnumerator();
        Assert.True(await e.MoveNextAsync());
        // Not disposed, not read any further.
        var r = await p.AskAsync(ImageA, Question, Greedy20).WaitAsync(HangGuard);
        Assert.Equal(ReferenceIds(), r.TokenIds);
        await e.DisposeAsync();
    }

    [SkippableFact]
    public async Task Two_streams_read_alternately_from_one_thread_both_finish()
    {
        var p = tiny.Get("llama2");
        using var a = p.CreateSession();
        using var b = p.CreateSession();
        a.AddImage(ImageA);
        b.AddImage(ImageA);
        var ea = a.StreamAsync(Question, Greedy20).GetAsyncEnumerator();
        var eb = b.StreamAsync(Question, Greedy20).GetAsyncEnumerator();
        bool moreA = true, moreB = true;
        var guard = Task.Run(async () =>
        {
            while (moreA || moreB)
            {
                if (moreA) moreA = await ea.MoveNextAsync();
                if (moreB) moreB = await eb.MoveNextAsync();
            }
        });
        await guard.WaitAsync(HangGuard);
        await ea.DisposeAsync();
        await eb.DisposeAsync();
        Assert.Equal(ReferenceIds("llama2"), a.LastResponse!.TokenIds);
        Assert.Equal(ReferenceIds("llama2"), b.LastResponse!.TokenIds);
    }

    [SkippableFact]
    public async Task A_cancelled_second_turn_leaves_history_and_cache_as_they_were()
    {
        var p = tiny.Get("vicuna0");
        using var s = p.CreateSession();
        s.AddImage(ImageA);
        await s.AskAsync(Question, Greedy20);
        var history = s.History;
        var cached = s.CachedTokens;
        using var cts = new CancellationTokenSource();
        var deltas = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in s.StreamAsync("What colour is the biggest shape?", Greedy20, cts.Token))
                if (++deltas == 2) cts.Cancel();
        });
        Assert.Equal(history, s.History);
        Assert.Equal(cached, s.CachedTokens);

        var resumed = await s.AskAsync("What colour is the biggest shape?", Greedy20);
        using var fresh = p.CreateSession();
        fresh.AddImage(ImageA);
        await fresh.AskAsync(Question, Greedy20);
        var expected = await fresh.AskAsync("What colour is the biggest shape?", Greedy20);
        Assert.Equal(expected.TokenIds, resumed.TokenIds);
        Assert.Equal(expected.Usage.ReusedPromptTokens, resumed.Usage.ReusedPromptTokens);
    }

    [SkippableFact]
    public async Task Cancelling_AskAsync_throws_and_cancelling_a_load_frees_what_it_loaded()
    {
        var p = tiny.Get("vicuna0");
        using var cts = new CancellationTokenSource();
        using var s = p.CreateSession();
        s.AddImage(ImageA);
        var ask = s.AskAsync(Question, GenerationOptions.Greedy with { MaxNewTokens = 400, UseTemplateStops = false }, cts.Token);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ask);
        Assert.Single(s.History);

        var residue = await LoadDisposeResidue();
        foreach (var stage in new[] { "vision encoder", "language model" })
        {
            var before = LiveTensors.Settled();
            using var loadCts = new CancellationTokenSource();
            var progress = new CancelOnStage(stage, loadCts);
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => MiniGptPipeline.LoadAsync(
                Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json"), TinyPipelines.Float32Exact, progress, loadCts.Token));
            Assert.True(progress.Cancelled, stage);
            Assert.True(LiveTensors.Settled() - before <= residue, stage); // every module built so far was freed
        }
    }

    [SkippableFact]
    public async Task A_malformed_tokenizer_fails_the_load_with_a_typed_error_and_frees_the_weights_read_meanwhile()
    {
        // The tokenizer is parsed while the weights load, so a malformed one is found after they were read.
        var tiny = Path.GetDirectoryName(Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json"))!;
        using var dir = new TempDir();
        foreach (var file in Directory.EnumerateFiles(tiny, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(tiny, file);
            if (relative.StartsWith("arrays", StringComparison.Ordinal)) continue;
            Directory.CreateDirectory(Path.GetDirectoryName(dir.File(relative))!);
            File.Copy(file, dir.File(relative));
        }
        File.WriteAllBytes(dir.File(Path.Combine("llama", "tokenizer.model")), [0x0A, 0xFF, 0xFF, 0x01, 0x02]);

        // Counted before any collection: tensors a failed load did not dispose would still be alive (later the finalizer
        // frees them, which is what a leak of gigabytes looks like in a host until a full collection).
        var before = LiveTensors.Settled();
        (await MiniGptPipeline.LoadAsync(Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json"), TinyPipelines.Float32Exact)).Dispose();
        var residue = TorchSharp.torch.Tensor.TotalCount - before;
        before = LiveTensors.Settled();
        var error = await Assert.ThrowsAsync<MiniGptConfigurationException>(() =>
            MiniGptPipeline.LoadAsync(dir.File("minigpt4-vicuna0.json"), TinyPipelines.Float32Exact));
        Assert.Contains("tokenizer.model", error.Message);
        Assert.True(TorchSharp.torch.Tensor.TotalCount - before <= residue, "the vision tower and the language model were disposed");
    }

    /// <summary>Cancels the load at the first progress report of <paramref name="stage"/> after its start (mid-stage, between tensors).</summary>
    private sealed class CancelOnStage(string stage, CancellationTokenSource cts) : IProgress<MiniGptProgress>
    {
        private int _reports;

        public bool Cancelled { get; private set; }

        public void Report(MiniGptProgress value)
        {
            if (value.Stage != stage || ++_reports < 2) return;
            Cancelled = true;
            cts.Cancel();
        }
    }

    [SkippableFact]
    public async Task Image_placeholder_text_in_a_question_is_plain_text()
    {
        var p = tiny.Get("vicuna0");
        var r = await p.AskAsync(ImageA, "What is <ImageHere> in <Img>?", Greedy20);
        Assert.Equal(2, r.SegmentIds.Count); // one image, two text segments: the typed placeholder stays text
        Assert.Contains("What is <ImageHere> in <Img>?", r.Prompt);
        Assert.Equal(20, r.TokenIds.Count);
    }

    [SkippableFact]
    public async Task Non_finite_logits_raise_a_typed_error_naming_the_step()
    {
        using var p = Load();
        var lm = (LlamaLanguageModel)p.LanguageModel;
        using (torch.no_grad())
            foreach (var (name, param) in lm.Model.named_parameters())
                if (name == "model.norm.weight") param.fill_(float.NaN);
        var ex = await Assert.ThrowsAsync<MiniGptNumericsException>(() => p.AskAsync(ImageA, Question, Greedy20));
        Assert.Equal(0, ex.Step);
        Assert.Contains("non-finite", ex.Message);
    }

    [SkippableFact]
    public async Task A_full_queue_refuses_at_once_and_waiting_requests_run_when_a_slot_frees()
    {
        using var p = Load(new MiniGptLoadOptions { MaxConcurrentRequests = 1, MaxQueuedRequests = 1 });
        using var holder = p.CreateSession();
        holder.AddImage(ImageA);
        using var waiter = p.CreateSession();
        waiter.AddImage(ImageA);
        var e = holder.StreamAsync(Question, Greedy20).GetAsyncEnumerator();
        Assert.True(await e.MoveNextAsync()); // holds the only slot while its reader waits
        var queued = waiter.AskAsync(Question, Greedy20);
        Assert.Equal(1, p.QueuedRequests);
        var ex = await Assert.ThrowsAsync<MiniGptQueueFullException>(() => p.AskAsync(ImageA, Question, Greedy20));
        Assert.Equal(1, ex.QueueDepth);
        Assert.False(queued.IsCompleted);
        while (await e.MoveNextAsync()) { }
        await e.DisposeAsync();
        var r = await queued.WaitAsync(HangGuard);
        Assert.Equal(ReferenceIds(), r.TokenIds);
        Assert.Equal(0, p.QueuedRequests);
        Assert.Equal(0, p.ActiveRequests);
    }

    [SkippableFact]
    public async Task A_queued_request_that_is_cancelled_leaves_the_queue()
    {
        using var p = Load(new MiniGptLoadOptions { MaxConcurrentRequests = 1 });
        using var holder = p.CreateSession();
        holder.AddImage(ImageA);
        var e = holder.StreamAsync(Question, Greedy20).GetAsyncEnumerator();
        Assert.True(await e.MoveNextAsync());
        using var cts = new CancellationTokenSource();
        var queued = p.AskAsync(ImageA, Question, Greedy20, cts.Token);
        Assert.Equal(1, p.QueuedRequests);
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => queued);
        Assert.Equal(0, p.QueuedRequests);
        await e.DisposeAsync();
    }

    private static MiniGptPipeline LoadTextOnly(MiniGptLoadOptions options) =>
        MiniGptPipeline.LoadAsync(Fixtures.Require("oracle/tiny/llama"), options with { DType = MiniGptDType.Float32 }).GetAwaiter().GetResult();

    [SkippableFact]
    public async Task A_request_larger_than_the_memory_budget_is_refused_and_caches_grow_by_need()
    {
        var perPosition = ((LlamaLanguageModel)tiny.Get("vicuna0").LanguageModel).CacheBytesPerPosition;
        using var p = LoadTextOnly(new MiniGptLoadOptions { MemoryBudgetBytes = perPosition * 300 });
        using var s = p.CreateSession();
        var ex = await Assert.ThrowsAsync<MiniGptCapacityException>(() => s.AskAsync("Hello", Greedy20 with { MaxNewTokens = 1900, MaxContextLength = 2048 }));
        Assert.True(ex.RequestedBytes > ex.BudgetBytes);
        Assert.Empty(s.History);

        var r = await s.AskAsync("Hello", Greedy20);
        var positions = r.Usage.PromptTokens + 20;
        var held = p.Admission.ReservedBytes; // nothing runs: what the one idle cache holds
        // The cache holds the prompt plus the new tokens, rounded up to the allocation granularity: not the 2048-position context.
        Assert.InRange(held, perPosition * positions, perPosition * (positions + 64));
    }

    [SkippableFact]
    public async Task Idle_caches_are_evicted_least_recently_used_first_without_changing_answers()
    {
        var perPosition = ((LlamaLanguageModel)tiny.Get("vicuna0").LanguageModel).CacheBytesPerPosition;
        long held, answer;
        using (var probe = LoadTextOnly(new MiniGptLoadOptions()))
        using (var s = probe.CreateSession())
        {
            var r = await s.AskAsync("Hello", Greedy20);
            held = probe.Admission.ReservedBytes; // nothing runs: what the one idle cache holds
            answer = perPosition * (r.Usage.PromptTokens + 20);
        }
        // Room for two idle caches, or one idle cache and an answer; not for two idle caches and an answer.
        using var p = LoadTextOnly(new MiniGptLoadOptions { MemoryBudgetBytes = 2 * held + answer - perPosition });
        using var first = p.CreateSession();
        using var second = p.CreateSession();
        using var third = p.CreateSession();
        var a1 = await first.AskAsync("Hello", Greedy20);
        await second.AskAsync("Hello", Greedy20);
        Assert.True(first.CachedTokens > 0);
        await third.AskAsync("Hello", Greedy20);
        Assert.Equal(0, first.CachedTokens); // the least recently used cache made room
        Assert.True(second.CachedTokens > 0);

        var a2 = await first.AskAsync("And then?", Greedy20);
        Assert.Equal(0, a2.Usage.ReusedPromptTokens);
        using var fresh = p.CreateSession();
        Assert.Equal(a1.TokenIds, (await fresh.AskAsync("Hello", Greedy20)).TokenIds);
        Assert.Equal((await fresh.AskAsync("And then?", Greedy20)).TokenIds, a2.TokenIds);
    }

    [Fact]
    public void Load_options_are_validated_once_with_a_typed_error()
    {
        foreach (var bad in new[]
                 {
                     new MiniGptLoadOptions { MaxConcurrentRequests = 0 }, new MiniGptLoadOptions { MaxQueuedRequests = -1 },
                     new MiniGptLoadOptions { MemoryBudgetBytes = 0 }, new MiniGptLoadOptions { Threads = 0 },
                     new MiniGptLoadOptions { ContextLength = -5 },
                 })
            Assert.Throws<MiniGptConfigurationException>(() => bad.Validate());
    }
}
