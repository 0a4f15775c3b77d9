using System.Diagnostics;
using System.Text.Json;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Training;

/// <summary>The CLI's train verb: a short stage-1 run, then stage 2 from its output, resumable, the result loading.</summary>
public class CliTrainTests
{
    private static Task<(int Exit, string Stdout, string Stderr)> RunAsync(params string[] args) => CliProcess.RunAsync(null, args);

    [SkippableFact]
    public async Task Train_stage1_then_stage2_writes_a_model_that_loads()
    {
        using var dir = new TempDir();
        var images = Oracle.Images.Take(3).Select(i => Oracle.Image(i.Stem)).ToArray();
        File.WriteAllLines(dir.File("s1.jsonl"), images.Select((p, i) => JsonSerializer.Serialize(new { image = p, text = $"caption {i}" })));
        File.WriteAllLines(dir.File("s2.jsonl"), images.Select((p, i) => JsonSerializer.Serialize(new
        {
            image = p,
            conversation = new[] { new { role = "user", text = "Describe this image." }, new { role = "assistant", text = $"Picture {i}." } },
        })));
        var s1 = dir.File("s1");
        var (exit, stdout, stderr) = await RunAsync("train", "--model", Oracle.Tiny("minigpt4-vicuna0.json"), "--data", dir.File("s1.jsonl"),
            "--stage", "1", "--out", s1, "--steps", "3", "--batch", "2", "--lr", "1e-2", "--reset-projection", "--seed", "5");
        Assert.True(exit == 0, stderr);
        Assert.Equal(Path.Combine(s1, "minigpt4.json"), stdout.Trim());
        Assert.Contains("step 3/3", stderr);
        Assert.Contains("steps/s", stderr);

        var s2 = dir.File("s2");
        (exit, stdout, stderr) = await RunAsync("train", "--model", Path.Combine(s1, "minigpt4.json"), "--data", dir.File("s2.jsonl"),
            "--stage", "2", "--out", s2, "--steps", "2", "--batch", "3");
        Assert.True(exit == 0, stderr);
        // Resuming a finished run does nothing more and rewrites the same checkpoint.
        var bytes = await File.ReadAllBytesAsync(Path.Combine(s2, "llama_proj.pth"));
        (exit, _, stderr) = await RunAsync("train", "--model", Path.Combine(s1, "minigpt4.json"), "--data", dir.File("s2.jsonl"),
            "--stage", "2", "--out", s2, "--steps", "2", "--batch", "3", "--resume");
        Assert.True(exit == 0, stderr);
        Assert.Equal(bytes, await File.ReadAllBytesAsync(Path.Combine(s2, "llama_proj.pth")));

        using var pipeline = await MiniGptPipeline.LoadAsync(stdout.Trim(), new MiniGptLoadOptions { DType = MiniGptDType.Float32 });
        var answer = await pipeline.AskAsync(ImageInput.FromFile(images[0]), "Describe this image.", new GenerationOptions { Temperature = 0, MaxNewTokens = 4 });
        Assert.True(answer.Usage.GeneratedTokens > 0);

        (exit, _, stderr) = await RunAsync("train", "--model", Oracle.Tiny("minigpt4-vicuna0.json"), "--data", dir.File("s2.jsonl"), "--stage", "3", "--out", s2);
        Assert.Equal(2, exit);
        Assert.Contains("--stage", stderr);
        (exit, _, stderr) = await RunAsync("train", "--model", Oracle.Tiny("minigpt4-vicuna0.json"), "--data", dir.File("s1.jsonl"), "--stage", "2", "--out", s2);
        Assert.Equal(1, exit);
        Assert.Contains("s1.jsonl:1", stderr);
    }
}
