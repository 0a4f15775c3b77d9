using System.Diagnostics;
using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;
using MiniGpt4.Extensions.AI;
using MiniGpt4.Tests.Pipeline;
using MiniGpt4.Tests.Support;
using Xunit;
using static MiniGpt4.Tests.Chat.ChatReplayTests;

namespace MiniGpt4.Tests.Chat;

/// <summary>
/// A conversation saved after turn one and restored continues with the same tokens (in a pipeline loaded again from
/// disk, and in a new process through the console sample); a file from another model is refused with a typed error.
/// </summary>
public class SessionSaveRestoreTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    private static async Task<(MiniGptResponse Turn2, MiniGptResponse Turn3)> LiveTurns23(MiniGptPipeline p)
    {
        using var live = p.CreateSession();
        await live.AddImageAsync(ImageA);
        await live.AskAsync(Q1, Greedy12);
        return (await live.AskAsync(Q2, Greedy12), await live.AskAsync(Q3, Greedy12));
    }

    private static async Task<byte[]> SavedAfterTurnOne(MiniGptPipeline p)
    {
        using var session = p.CreateSession();
        await session.AddImageAsync(ImageA);
        await session.AskAsync(Q1, Greedy12);
        using var stream = new MemoryStream();
        await session.SaveAsync(stream);
        return stream.ToArray();
    }

    [SkippableTheory]
    [InlineData("vicuna0")]
    [InlineData("minigptv2")]
    public async Task A_conversation_restored_in_a_pipeline_loaded_again_continues_with_the_same_tokens(string variant)
    {
        var p = tiny.Get(variant);
        var (turn2, turn3) = await LiveTurns23(p);
        var saved = await SavedAfterTurnOne(p);

        var manifest = Fixtures.Require(variant == "minigptv2" ? "oracle/tiny/minigptv2/minigptv2.json" : $"oracle/tiny/minigpt4-{variant}.json");
        using var other = await MiniGptPipeline.LoadAsync(manifest, TinyPipelines.Float32Exact);
        using var restored = await other.RestoreSessionAsync(new MemoryStream(saved));
        Assert.Equal(2, restored.History.Count);
        Assert.True(restored.CachedTokens > 0);
        var r2 = await restored.AskAsync(Q2, Greedy12);
        Assert.Equal(turn2.TokenIds, r2.TokenIds);
        Assert.Equal(turn2.Prompt, r2.Prompt);
        Assert.Equal(turn2.Usage, r2.Usage); // the restored cache is reused: only turn two's new tokens are prefilled
        Assert.Equal(turn3.TokenIds, (await restored.AskAsync(Q3, Greedy12)).TokenIds);
    }

    [SkippableFact]
    public async Task A_conversation_saved_by_one_process_continues_in_another_with_the_same_tokens()
    {
        var p = tiny.Get("vicuna0");
        using var live = p.CreateSession();
        await live.AddImageAsync(ImageA);
        var streamed1 = "";
        await foreach (var d in live.StreamAsync(Q1, Greedy12)) streamed1 += d;
        var streamed2 = "";
        await foreach (var d in live.StreamAsync(Q2, Greedy12)) streamed2 += d;
        var usage2 = live.LastResponse!.Usage;

        using var dir = new TempDir();
        var file = dir.File("chat.session");
        string[] common = ["--model", Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json"), "--temperature", "0", "--repetition-penalty", "1.0",
            "--max-new-tokens", "12", "--no-template-stops", "--dtype", "float32", "--decoder", "skia"];
        var first = await RunCli(Q1 + "\n", ["chat", .. common, "--image", Oracle.Image("a_gradient_shapes_640x480.png"), "--save-session", file]);
        Assert.True(first.Exit == 0, first.Stderr);
        Assert.Equal(streamed1 + "\n", first.Stdout);
        Assert.True(File.Exists(file));

        var second = await RunCli(Q2 + "\n", ["chat", .. common, "--resume", file]);
        Assert.True(second.Exit == 0, second.Stderr);
        Assert.Equal(streamed2 + "\n", second.Stdout);
        Assert.Matches(new Regex($@"prefilled {usage2.PrefilledPromptTokens} of {usage2.PromptTokens},"), second.Stderr);
    }

    [Fact]
    public async Task Chat_without_an_image_or_a_saved_conversation_is_a_usage_error()
    {
        var (exit, stdout, stderr) = await RunCli("", ["chat", "--model", "model.json"]);
        Assert.Equal(2, exit);
        Assert.Contains("--resume", stderr);
        Assert.Equal("", stdout);
    }

    [SkippableFact]
    public async Task A_conversation_from_another_variant_is_refused_with_a_typed_error()
    {
        var saved = await SavedAfterTurnOne(tiny.Get("vicuna0"));
        var e = await Assert.ThrowsAsync<MiniGptModelMismatchException>(() => tiny.Get("llama2").RestoreSessionAsync(new MemoryStream(saved)));
        Assert.Contains("minigpt4-vicuna0", e.SavedModel);
        Assert.Contains("minigpt4-llama2", e.CurrentModel);
    }

    [SkippableFact]
    public async Task A_conversation_from_the_same_variant_with_other_weights_is_refused()
    {
        var saved = await SavedAfterTurnOne(tiny.Get("vicuna0"));
        using var dir = new TempDir();
        CopyTree(Path.GetDirectoryName(Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json"))!, dir.Path);
        // One value of the language model changes: the last element of the last tensor in the safetensors file.
        var weights = Path.Combine(dir.Path, "llama", "model.safetensors");
        var bytes = File.ReadAllBytes(weights);
        bytes[^2] ^= 0x40;
        File.WriteAllBytes(weights, bytes);
        using var other = await MiniGptPipeline.LoadAsync(Path.Combine(dir.Path, "minigpt4-vicuna0.json"), TinyPipelines.Float32Exact);
        var e = await Assert.ThrowsAsync<MiniGptModelMismatchException>(() => other.RestoreSessionAsync(new MemoryStream(saved)));
        Assert.Contains("minigpt4-vicuna0", e.SavedModel);
        Assert.NotEqual(e.SavedModel, e.CurrentModel);
    }

    [SkippableFact]
    public async Task A_bfloat16_pipeline_restores_a_float32_conversation_without_its_cache()
    {
        var saved = await SavedAfterTurnOne(tiny.Get("vicuna0"));
        using var bf16 = await MiniGptPipeline.LoadAsync(Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json"),
            TinyPipelines.Float32Exact with { DType = MiniGptDType.BFloat16 });
        using var restored = await bf16.RestoreSessionAsync(new MemoryStream(saved));
        Assert.Equal(0, restored.CachedTokens); // same model, another cache dtype: the next turn prefills in full
        var r2 = await restored.AskAsync(Q2, Greedy12);
        Assert.Equal(0, r2.Usage.ReusedPromptTokens);
        Assert.Equal(12, r2.Usage.GeneratedTokens);
    }

    [SkippableTheory]
    [InlineData("magic")]
    [InlineData("version")]
    [InlineData("truncated")]
    [InlineData("tail")]
    [InlineData("empty")]
    public async Task Damaged_data_is_refused_with_a_session_error(string damage)
    {
        var p = tiny.Get("vicuna0");
        var saved = await SavedAfterTurnOne(p);
        var bad = damage switch
        {
            "magic" => [(byte)'X', .. saved[1..]],
            "version" => [.. saved[..8], 9, 0, 0, 0, .. saved[12..]],
            "truncated" => saved[..(saved.Length / 2)],
            "tail" => [.. saved[..^4], .. "NOPE"u8.ToArray()],
            _ => Array.Empty<byte>(),
        };
        var e = await Assert.ThrowsAnyAsync<MiniGptSessionException>(() => p.RestoreSessionAsync(new MemoryStream(bad)));
        Assert.IsNotType<MiniGptModelMismatchException>(e);
    }

    [SkippableFact]
    public async Task Saving_restoring_and_replaying_leave_no_live_tensors_behind()
    {
        var p = tiny.Get("vicuna0");
        async Task Cycle()
        {
            var saved = await SavedAfterTurnOne(p);
            using (var restored = await p.RestoreSessionAsync(new MemoryStream(saved)))
            {
                await restored.AskAsync(Q2, Greedy12);
                await restored.ReplaceHistoryAsync("x", [ChatTurn.User(Q1, ImageA)]);
                await restored.AskAsync(Q3, Greedy12);
            }
            using var client = p.AsIChatClient();
            var png = await File.ReadAllBytesAsync(Oracle.Image("a_gradient_shapes_640x480.png"));
            List<ChatMessage> history =
                [new(ChatRole.User, [new DataContent(png, "image/png"), new TextContent(Q1)])];
            var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 6 };
            var a = await client.GetResponseAsync(history, options);
            history.AddRange(a.Messages);
            history.Add(new(ChatRole.User, Q2));
            await client.GetResponseAsync(history, options);
        }
        await Cycle(); // warm-up: the model identity, first-use buffers
        var before = LiveTensors.Settled();
        for (var i = 0; i < 3; i++) await Cycle();
        Assert.Equal(before, LiveTensors.Settled());
    }

    private static void CopyTree(string from, string to)
    {
        foreach (var d in Directory.GetDirectories(from, "*", SearchOption.AllDirectories)) Directory.CreateDirectory(d.Replace(from, to));
        foreach (var f in Directory.GetFiles(from, "*", SearchOption.AllDirectories)) File.Copy(f, f.Replace(from, to));
    }

    private static Task<(int Exit, string Stdout, string Stderr)> RunCli(string stdin, string[] args) => CliProcess.RunAsync(stdin, args);
}
