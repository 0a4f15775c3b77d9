using System.Diagnostics;
using System.Text.Json.Nodes;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>The console sample, run as a real process, against the oracle.</summary>
public class CliTests
{
    private static (int Exit, string Stdout, string Stderr) Run(params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "MiniGpt4.Cli.dll");
        var psi = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        p.WaitForExit();
        return (p.ExitCode, stdout.Result, stderr.Result);
    }

    [SkippableTheory]
    [InlineData("vicuna0", "a_gradient_shapes_640x480.png", "rp_1.0")]
    [InlineData("vicuna0", "b_tall_100x300.jpg", "rp_1.05")]
    [InlineData("llama2", "a_gradient_shapes_640x480.png", "rp_1.05")]
    [InlineData("llama2", "b_tall_100x300.jpg", "rp_1.0")]
    public void Generate_json_matches_reference(string variant, string image, string run)
    {
        var chat = Oracle.Reference["variants"]![variant]!["chat"]![image]!;
        var r = chat["runs"]![run]!;
        var (exit, stdout, stderr) = Run("generate", "--model", Fixtures.Require($"oracle/tiny/minigpt4-{variant}.json"),
            "--image", Oracle.Image(image), "--prompt", chat["question"]!.GetValue<string>(),
            "--temperature", "0", "--repetition-penalty", r["repetition_penalty"]!.ToString(), "--max-new-tokens", "20",
            "--no-template-stops", "--dtype", "float32", "--decoder", "skia", "--format", "json");
        Assert.True(exit == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        Assert.Equal(r["chat_answer_text"]!.GetValue<string>(), json["text"]!.GetValue<string>());
        Assert.Equal(Oracle.Ints(r["generated_ids"]), Oracle.Ints(json["token_ids"]));
        Assert.Equal(chat["prompt"]!.GetValue<string>(), json["prompt"]!.GetValue<string>());
        var segs = chat["segments"]!.AsArray();
        for (var i = 0; i < segs.Count; i++) Assert.Equal(Oracle.Ints(segs[i]!["ids"]), Oracle.Ints(json["segment_ids"]![i]));
        Assert.Equal(chat["input_embeds_len"]!.GetValue<int>(), json["prompt_tokens"]!.GetValue<int>());
        Assert.Equal("length", json["finish_reason"]!.GetValue<string>());
        Assert.NotNull(json["timings"]!["prefill_ms"]);
    }

    [SkippableFact]
    public void Text_only_generation_matches_the_reference_llm()
    {
        // reference.json -> vicuna0.text_only_llm: BOS + the prompt, 20 greedy tokens from generate(input_ids=...).
        var t = Oracle.Reference["variants"]!["vicuna0"]!["text_only_llm"]!;
        var prompt = t["prompt"]!.GetValue<string>();
        var (exit, stdout, stderr) = Run("generate", "--model", Fixtures.Require("oracle/tiny/llama"), "--prompt", prompt, "--raw",
            "--temperature", "0", "--repetition-penalty", "1", "--max-new-tokens", "20", "--dtype", "float32", "--format", "json");
        Assert.True(exit == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        Assert.Equal(Oracle.Ints(t["input_ids"]), Oracle.Ints(json["segment_ids"]![0]));
        Assert.Equal(Oracle.Ints(t["generated_ids"]), Oracle.Ints(json["token_ids"]));
    }

    [SkippableFact]
    public void A_real_trained_model_generates_the_reference_story()
    {
        // stories260K: llama2.c's and transformers' greedy output from BOS; it ends stories with BOS (id 1).
        var c = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Fixtures.Require("assets/stories260K/reference.json")))!["cases"]![0]!;
        var (exit, stdout, stderr) = Run("generate", "--model", Fixtures.Require("assets/stories260K"), "--prompt", c["prompt_text"]!.GetValue<string>(),
            "--raw", "--temperature", "0", "--repetition-penalty", "1", "--max-new-tokens", c["max_new_tokens"]!.ToString(),
            "--stop-token-id", "1", "--dtype", "float32", "--format", "json");
        Assert.True(exit == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        Assert.Equal(Oracle.Ints(c["prompt_ids"]), Oracle.Ints(json["segment_ids"]![0]));
        Assert.Equal(Oracle.Ints(c["generated_ids"]), Oracle.Ints(json["token_ids"]));
        Assert.Equal(c["generated_text"]!.GetValue<string>(), json["text"]!.GetValue<string>());
    }

    [SkippableFact]
    public void Tokenize_prints_ids_and_pieces()
    {
        var (exit, stdout, stderr) = Run("tokenize", "--model", Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json"), "--text", "Hello world", "--format", "json");
        Assert.True(exit == 0, stderr);
        var json = JsonNode.Parse(stdout)!;
        var ids = Oracle.Ints(json["ids"]);
        Assert.Equal(1, ids[0]);
        Assert.Equal(ids.Length, json["pieces"]!.AsArray().Count);
        Assert.Equal("<s>", json["pieces"]![0]!.GetValue<string>());
    }

    [Fact]
    public void Without_a_model_it_explains_where_to_get_the_weights()
    {
        var (exit, _, stderr) = Run("generate", "--prompt", "hi");
        Assert.Equal(2, exit);
        Assert.Contains("never downloads", stderr);
        Assert.Contains("minigpt4.json", stderr);
    }

    [SkippableFact]
    public void Convert_writes_a_safetensors_bundle_that_gives_the_same_answer()
    {
        var manifest = Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json");
        using var tmp = new TempDir();
        var (exit, stdout, stderr) = Run("convert", "--model", manifest, "--out", tmp.Path, "--dtype", "float32");
        Assert.True(exit == 0, stderr);
        Assert.Contains("minigpt4.json", stdout);
        Assert.True(File.Exists(tmp.File("vision.safetensors")));
        Assert.True(File.Exists(Path.Combine(tmp.Path, "llm", "tokenizer.model")));
        var args = new[] { "--image", Oracle.Image("a_gradient_shapes_640x480.png"), "--prompt", "Describe this image in detail.",
            "--temperature", "0", "--max-new-tokens", "20", "--no-template-stops", "--dtype", "float32", "--format", "json" };
        var a = Run(["generate", "--model", manifest, .. args]);
        var b = Run(["generate", "--model", tmp.File("minigpt4.json"), .. args]);
        Assert.True(a.Exit == 0 && b.Exit == 0, a.Stderr + b.Stderr);
        Assert.Equal(JsonNode.Parse(a.Stdout)!["token_ids"]!.ToJsonString(), JsonNode.Parse(b.Stdout)!["token_ids"]!.ToJsonString());
    }
}
