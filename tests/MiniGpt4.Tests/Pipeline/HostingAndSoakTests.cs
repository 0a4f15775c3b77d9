using System.Net;
using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using MiniGpt4.Models;
using MiniGpt4.Tests.Support;
using MiniGpt4.WebHost;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>Several images, reduced precision, and native memory over many requests.</summary>
public class SessionAndSoakTests(TinyPipelines tiny, ITestOutputHelper output) : IClassFixture<TinyPipelines>
{
    private static ImageInput Image(string name) => ImageInput.FromFile(Oracle.Image(name));

    [SkippableFact]
    public async Task Several_images_in_one_conversation()
    {
        var p = tiny.Get("vicuna0");
        using var s = p.CreateSession();
        s.AddImage(Image("a_gradient_shapes_640x480.png"));
        var first = await s.AskAsync("Describe this image in detail.", GenerationOptions.Greedy with { MaxNewTokens = 5 });
        s.AddImage(Image("c_square_224x224.png"));
        var second = await s.AskAsync("And this one?", GenerationOptions.Greedy with { MaxNewTokens = 5 });
        Assert.Equal(2, second.SegmentIds.Count - 1);
        Assert.Contains("<Img><ImageHere></Img> And this one?", second.Prompt);
        Assert.Equal(second.SegmentIds.Sum(x => x.Count) + 2 * p.Projector!.TokensPerImage, second.Usage.PromptTokens);
        // The first image and the text up to it come from the cache.
        Assert.True(second.Usage.ReusedPromptTokens >= first.SegmentIds[0].Count + p.Projector.TokensPerImage);
        // Same conversation recomputed from scratch gives the same answer.
        using var fresh = p.CreateSession();
        fresh.AddImage(Image("a_gradient_shapes_640x480.png"));
        await fresh.AskAsync("Describe this image in detail.", GenerationOptions.Greedy with { MaxNewTokens = 5 });
        fresh.AddImage(Image("c_square_224x224.png"));
        var again = await fresh.AskAsync("And this one?", GenerationOptions.Greedy with { MaxNewTokens = 5 });
        Assert.Equal(second.TokenIds, again.TokenIds);
    }

    [SkippableFact]
    public async Task Bfloat16_pipeline_runs_close_to_the_reference()
    {
        var manifest = Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json");
        using var p = await MiniGptPipeline.LoadAsync(manifest, TinyPipelines.Float32Exact with { DType = MiniGptDType.BFloat16 });
        float[]? logits = null;
        ((LlamaLanguageModel)p.LanguageModel).PrefillObserver = (_, l) => logits = Tensors.ToFloats(l);
        var r = await p.AskAsync(Image("a_gradient_shapes_640x480.png"), "Describe this image in detail.", GenerationOptions.Greedy with { MaxNewTokens = 20 });
        Assert.Equal(20, r.TokenIds.Count);
        var chat = Oracle.Reference["variants"]!["vicuna0"]!["chat"]!["a_gradient_shapes_640x480.png"]!;
        var reference = Oracle.Array(chat["first_step_logits"]!.GetValue<string>()).ToFloat();
        var d = Oracle.MaxAbsDiff(logits!, reference);
        output.WriteLine($"bf16 first-step logits max|d| vs fp32 reference: {d:F3} (|logit| <= 13.2)");
        Assert.True(d < 1.0, $"bf16 logits differ by {d}");
        var top = Array.IndexOf(reference, reference.Max());
        Assert.Equal(top, Array.IndexOf(logits!, logits!.Max()));
    }

    [SkippableFact]
    public async Task Soak_native_memory_stays_flat_over_hundreds_of_concurrent_answers()
    {
        var p = tiny.Get("llama2");
        var options = GenerationOptions.Greedy with { MaxNewTokens = 20 };
        async Task Round(int i)
        {
            using var s = p.CreateSession();
            await s.AddImageAsync(Image(i % 2 == 0 ? "b_tall_100x300.jpg" : "d_rgba_300x180.png"));
            await s.AskAsync("Describe this image in detail.", options);
            if (i % 10 == 9)
            {
                // A cancelled second turn: undone, nothing kept.
                using var cts = new CancellationTokenSource();
                var deltas = 0;
                await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
                {
                    await foreach (var _ in s.StreamAsync("What colour is the biggest shape?", options, cts.Token))
                        if (++deltas == 2) cts.Cancel();
                });
            }
            await s.AskAsync("What colour is the biggest shape?", options with { NumBeams = 1 + i % 3 });
        }
        // Warm-up: every path and beam width, also three conversations at a time with interleaved steps
        // (each pool thread that calls into libtorch gets its own allocator arena and OpenMP team once).
        for (var i = 0; i < 24; i += 3) await Task.WhenAll(Enumerable.Range(i, 3).Select(Round));
        var tensors = LiveTensors.Settled();
        var rss0 = Rss();
        for (var i = 0; i < 150; i++)
        {
            await Round(i);
            if (i % 25 == 24) output.WriteLine($"after {i + 1} rounds: RSS {Rss() / 1e6:F1} MB");
        }
        var rss1 = Rss();
        output.WriteLine($"300 answers (15 cancelled turns): live tensors {tensors} -> {torch.Tensor.TotalCount}; RSS {rss0 / 1e6:F1} MB -> {rss1 / 1e6:F1} MB");
        Assert.Equal(tensors, torch.Tensor.TotalCount);
        Assert.Equal(0, p.ActiveRequests);
        // Each answer allocates a few MB of transient native memory; a leak of even one KV cache per
        // answer would add > 100 MB here. The allocator may keep some pages, hence the margin.
        Assert.True(rss1 - rss0 < 64_000_000, $"RSS grew by {(rss1 - rss0) / 1e6:F1} MB");
    }

    [System.Runtime.InteropServices.DllImport("libc.so.6", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    /// <summary>
    /// Resident memory after a collection and glibc's malloc_trim: what the allocator merely caches (freed
    /// image and activation buffers it keeps for reuse) is returned first, so growth means memory still held.
    /// </summary>
    private static long Rss()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        if (OperatingSystem.IsLinux()) MallocTrim(0);
        var line = File.ReadLines("/proc/self/status").First(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return long.Parse(line.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
    }
}
