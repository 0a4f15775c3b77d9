using System.Diagnostics;
using System.Text.Json.Nodes;
using MiniGpt4.Abstractions;
using MiniGpt4.SyntheticWorld;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>The CLI's batch and world verbs, run as real processes; batch against the tiny oracle model.</summary>
public class CliBatchWorldTests
{
    private static Task<(int Exit, string Stdout, string Stderr)> RunAsync(params string[] args) => CliProcess.RunAsync(null, args);

    private static JsonObject[] ReadJsonl(string path) => File.ReadAllLines(path).Select(l => JsonNode.Parse(l)!.AsObject()).ToArray();

    [SkippableFact]
    public async Task Batch_answers_in_input_order_with_ids_error_lines_and_per_line_options_and_matches_the_library()
    {
        var model = Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json");
        using var dir = new TempDir();
        WorldDataset.Write(dir.Path, 3, seed: 1, stage: 1);
        var images = Enumerable.Range(0, 3).Select(i => $"images/{i:D6}{SceneGenerator.Generate(1, i).Extension}").ToArray();
        string Line(string id, string? image, string prompt, JsonObject? options = null)
        {
            var o = new JsonObject { ["id"] = id, ["prompt"] = prompt, ["note"] = "ignored" };
            if (image is not null) o["image"] = image;
            if (options is not null) o["options"] = options;
            return o.ToJsonString();
        }
        var sampled = new JsonObject { ["temperature"] = 0.8, ["seed"] = 5, ["max_new_tokens"] = 6 };
        string[] lines =
        [
            Line("a", images[0], "How many shapes are there?"),
            Line("b", images[1], "Describe this image.", new JsonObject { ["max_new_tokens"] = 2, ["min_new_tokens"] = 2 }),
            "not json",
            Line("c", "missing.png", "What is this?"),
            """{"id": 7, "prompt": "x"}""",
            Line("d", null, "x", new JsonObject { ["temprature"] = 0 }),
            Line("e", null, "x", new JsonObject { ["max_new_tokens"] = "ten" }),
            "",
            Line("f", images[0], "How many shapes are there?"),
            Line("g", images[2], "What colour is the circle?", sampled),
            Line("h", images[2], "What colour is the circle?", (JsonObject)sampled.DeepClone()),
            Line("i", null, "Hello", new JsonObject { ["max_new_tokens"] = 3, ["min_new_tokens"] = 3, ["stop"] = new JsonArray() }),
        ];
        File.WriteAllLines(dir.File("requests.jsonl"), lines);

        var (exit, _, stderr) = await RunAsync("batch", "--model", model, "--input", dir.File("requests.jsonl"), "--output", dir.File("answers.jsonl"),
            "--temperature", "0", "--max-new-tokens", "5", "--dtype", "float32", "--concurrency", "4");
        Assert.True(exit == 0, stderr);
        Assert.Contains("11 requests, 5 errors", stderr);
        var answers = ReadJsonl(dir.File("answers.jsonl"));
        // One answer per non-blank line, in input order, with the request's id (null for a line that is not JSON).
        Assert.Equal(["a", "b", null, "c", "7", "d", "e", "f", "g", "h", "i"], answers.Select(a => a["id"]?.ToJsonString().Trim('"')));
        Assert.Equal([3, 4, 5, 6, 7], answers.Where(a => a.ContainsKey("error")).Select(a => a["line"]!.GetValue<int>()));
        Assert.Contains("invalid JSON", answers[2]["error"]!.GetValue<string>(), StringComparison.OrdinalIgnoreCase);
        Assert.Contains("missing.png", answers[3]["error"]!.GetValue<string>());
        Assert.Contains("\"id\" must be a string", answers[4]["error"]!.GetValue<string>());
        Assert.Contains("unknown option 'temprature'", answers[5]["error"]!.GetValue<string>());
        Assert.Contains("max_new_tokens", answers[6]["error"]!.GetValue<string>());
        foreach (var a in answers.Where(a => !a.ContainsKey("error")))
        {
            Assert.Equal(["id", "text", "prompt_tokens", "generated_tokens", "finish_reason"], a.Select(p => p.Key));
            Assert.InRange(a["generated_tokens"]!.GetValue<int>(), 1, 6);
            Assert.Contains(a["finish_reason"]!.GetValue<string>(), new[] { "stop", "length" });
        }
        Assert.Equal(2, answers[1]["generated_tokens"]!.GetValue<int>()); // per-line max/min new tokens
        Assert.Equal(3, answers[10]["generated_tokens"]!.GetValue<int>());
        Assert.Equal(answers[0].ToJsonString().Replace("\"a\"", "\"f\""), answers[7].ToJsonString()); // the same greedy request
        Assert.Equal(answers[8]["text"]!.GetValue<string>(), answers[9]["text"]!.GetValue<string>()); // the same seed

        // The batch's greedy answer is the library's, and images change the prompt (90 vs. the text-only line's count).
        using var pipeline = await MiniGptPipeline.LoadAsync(model, new MiniGptLoadOptions { DType = MiniGptDType.Float32 });
        using var session = pipeline.CreateSession();
        await session.AddImageAsync(ImageInput.FromFile(dir.File(images[0])));
        var expected = await session.AskAsync("How many shapes are there?", new GenerationOptions { DoSample = false, Temperature = 0, MaxNewTokens = 5 });
        Assert.Equal(expected.Text, answers[0]["text"]!.GetValue<string>());
        Assert.Equal(expected.Usage.PromptTokens, answers[0]["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(expected.Usage.GeneratedTokens, answers[0]["generated_tokens"]!.GetValue<int>());

        // One request at a time gives the same file: several in flight change nothing but the time.
        (exit, _, stderr) = await RunAsync("batch", "--model", model, "--input", dir.File("requests.jsonl"), "--output", dir.File("one.jsonl"),
            "--temperature", "0", "--max-new-tokens", "5", "--dtype", "float32", "--concurrency", "1");
        Assert.True(exit == 0, stderr);
        Assert.Equal(File.ReadAllText(dir.File("answers.jsonl")), File.ReadAllText(dir.File("one.jsonl")));
    }

    [SkippableFact]
    public async Task World_writes_a_data_set_whose_eval_file_batch_answers_line_for_line()
    {
        var model = Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json");
        using var dir = new TempDir();
        var (exit, stdout, stderr) = await RunAsync("world", "--out", dir.Path, "--count", "4", "--seed", "2", "--stage", "2");
        Assert.True(exit == 0, stderr);
        Assert.Equal(dir.File("stage2.jsonl"), stdout.Trim());
        Assert.Equal(4, File.ReadAllLines(dir.File("stage2.jsonl")).Length);
        Assert.Equal(4, Directory.GetFiles(dir.File("images")).Length);
        var eval = ReadJsonl(dir.File("eval.jsonl"));

        (exit, _, stderr) = await RunAsync("batch", "--model", model, "--input", dir.File("eval.jsonl"), "--output", dir.File("answers.jsonl"),
            "--temperature", "0", "--max-new-tokens", "2");
        Assert.True(exit == 0, stderr);
        var answers = ReadJsonl(dir.File("answers.jsonl"));
        Assert.Equal(eval.Select(e => e["id"]!.GetValue<string>()), answers.Select(a => a["id"]!.GetValue<string>()));
        Assert.DoesNotContain(answers, a => a.ContainsKey("error"));

        // world-score prints the four kinds for batch's answers; the reference answers score 100%.
        (exit, stdout, stderr) = await RunAsync("world-score", "--eval", dir.File("eval.jsonl"), "--answers", dir.File("answers.jsonl"));
        Assert.True(exit == 0, stderr);
        Assert.Equal(["count", "colour", "shape", "describe"], stdout.Trim().Split('\n').Select(l => l.Split(' ')[0]));
        File.WriteAllLines(dir.File("reference.jsonl"), eval.Select(e => new JsonObject { ["id"] = e["id"]!.GetValue<string>(), ["text"] = e["expected"]!.GetValue<string>() }.ToJsonString()));
        (exit, stdout, stderr) = await RunAsync("world-score", "--eval", dir.File("eval.jsonl"), "--answers", dir.File("reference.jsonl"), "--format", "json");
        Assert.True(exit == 0, stderr);
        var scores = JsonNode.Parse(stdout)!.AsObject();
        Assert.Equal(eval.Length, scores.Sum(k => k.Value!["total"]!.GetValue<int>()));
        Assert.All(scores, k => Assert.Equal(k.Value!["total"]!.GetValue<int>(), k.Value!["correct"]!.GetValue<int>()));
    }

    [Fact]
    public async Task Batch_takes_every_generation_option_of_generate()
    {
        var (exit, generateHelp, stderr) = await RunAsync("generate", "--help");
        Assert.True(exit == 0, stderr);
        var (exit2, batchHelp, stderr2) = await RunAsync("batch", "--help");
        Assert.True(exit2 == 0, stderr2);
        var options = new MiniGpt4.Cli.Options.GenerationOptionSet().All.Select(o => o.Name).ToArray();
        Assert.Equal(12, options.Length);
        foreach (var name in options)
        {
            Assert.Contains(name + " ", generateHelp);
            Assert.Contains(name + " ", batchHelp);
        }
        foreach (var name in new[] { "--model", "--input", "--output", "--concurrency", "--dtype", "--device", "--threads", "--decoder" })
            Assert.Contains(name + " ", batchHelp);
    }

    [Theory]
    [InlineData("world", "--out", "x", "--count", "3", "--stage", "3")]
    [InlineData("world", "--out", "x")]
    [InlineData("world", "--out", "x", "--count", "0")]
    [InlineData("batch", "--model", "m", "--output", "o.jsonl")]
    [InlineData("batch", "--model", "m", "--input", "/nonexistent/requests.jsonl", "--output", "o.jsonl")]
    [InlineData("batch", "--model", "m", "--input", "/nonexistent/requests.jsonl", "--output", "o.jsonl", "--concurrency", "0")]
    [InlineData("world-score", "--eval", "/nonexistent/eval.jsonl", "--answers", "/nonexistent/answers.jsonl")]
    public async Task Bad_arguments_are_usage_errors(params string[] args)
    {
        var (exit, _, stderr) = await RunAsync(args);
        Assert.Equal(2, exit);
        Assert.NotEmpty(stderr);
    }
}
