using System.Diagnostics;
using System.Text.Json.Nodes;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>The console sample, run as a real process, against the oracle.</summary>
public class CliTests
{
    private static (int Exit, string Stdout, string Stderr) Run(params string[] args) => RunWithInput(null, args);

    /// <summary>Runs the CLI; <paramref name="stdin"/>, when given, is its whole standard input.</summary>
    private static (int Exit, string Stdout, string Stderr) RunWithInput(string? stdin, params string[] args)
    {
        var dll = Path.Combine(AppContext.BaseDirectory, "MiniGpt4.Cli.dll");
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin is not null, UseShellExecute = false,
        };
        psi.ArgumentList.Add(dll);
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            p.StandardInput.Write(stdin);
            p.StandardInput.Close();
        }
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
    public void Without_a_model_generate_answers_with_the_bundled_toy_model()
    {
        var (exit, stdout, stderr) = Run("generate", "--prompt", "hi", "--temperature", "0", "--max-new-tokens", "4");
        Assert.True(exit == 0, stderr);
        Assert.Contains("eva_vit_g.pth", stderr); // the load progress names the bundled model's files
        Assert.False(string.IsNullOrWhiteSpace(stdout));
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

    // The command line itself. A parse error exits before the model is touched, so these need no fixtures:
    // "model.json" need not exist (were the command to run, it would fail with exit 1, not 2).

    [Theory]
    [InlineData("--temprature", "0", "--temperature")]
    [InlineData("--max-new-token", "4", "--max-new-tokens")]
    [InlineData("--top_p", "0.5", "--top-p")]
    public void A_misspelt_option_is_an_error_that_suggests_the_known_one(string typo, string value, string known)
    {
        var (exit, stdout, stderr) = Run("generate", "--model", "model.json", "--prompt", "hi", typo, value);
        Assert.Equal(2, exit);
        Assert.Contains($"'{typo}'", stderr);
        Assert.Contains($"did you mean '{known}'", stderr);
        Assert.Equal("", stdout);
    }

    [Fact]
    public void An_option_of_another_verb_says_which_verb_has_it()
    {
        var (exit, _, stderr) = Run("tokenize", "--model", "model.json", "--text", "hi", "--temperature", "0");
        Assert.Equal(2, exit);
        Assert.Contains("'--temperature'", stderr);
        Assert.Contains("generate", stderr);
    }

    [Theory]
    [InlineData("generate", "--stop-token-id", "x")]
    [InlineData("generate", "--temperature", "abc")]
    [InlineData("generate", "--max-new-tokens", "1.5")]
    [InlineData("generate", "--dtype", "foo")]
    [InlineData("generate", "--decoder", "gdi")]
    [InlineData("generate", "--format", "yaml")]
    [InlineData("chat", "--seed", "s")]
    [InlineData("tokenize", "--format", "yaml")]
    [InlineData("convert", "--dtype", "int3")]
    public void A_bad_value_is_an_error_naming_its_option(string verb, string option, string value)
    {
        string[] required = verb switch
        {
            "generate" => ["--prompt", "hi"],
            "chat" => ["--image", "photo.jpg"],
            "tokenize" => ["--text", "hi"],
            _ => ["--out", "out"],
        };
        var (exit, stdout, stderr) = Run([verb, "--model", "model.json", .. required, option, value]);
        Assert.Equal(2, exit);
        Assert.Contains(option, stderr);
        Assert.Contains($"'{value}'", stderr);
        Assert.DoesNotContain("Unhandled exception", stderr);
        Assert.Equal("", stdout);
    }

    [Fact]
    public void A_missing_value_is_an_error_naming_its_option()
    {
        var (exit, _, stderr) = Run("generate", "--model", "model.json", "--prompt", "hi", "--max-new-tokens");
        Assert.Equal(2, exit);
        Assert.Contains("--max-new-tokens", stderr);
    }

    [Fact]
    public void Generate_help_lists_every_option()
    {
        var (exit, stdout, stderr) = Run("generate", "--help");
        Assert.True(exit == 0, stderr);
        foreach (var option in new[]
                 {
                     "--model", "--image", "--prompt", "--temperature", "--top-p", "--top-k", "--repetition-penalty", "--num-beams",
                     "--length-penalty", "--max-new-tokens", "--min-new-tokens", "--seed", "--stop", "--stop-token-id",
                     "--no-template-stops", "--raw", "--dtype", "--device", "--threads", "--decoder", "--format",
                 })
            Assert.Contains(option + " ", stdout);
    }

    [Theory]
    [InlineData("chat", "--image")]
    [InlineData("generate", "--temperature")]
    [InlineData("tokenize", "--no-bos")]
    [InlineData("convert", "--out")]
    [InlineData("batch", "--concurrency")]
    [InlineData("world", "--stage")]
    [InlineData("world-score", "--answers")]
    public void Every_verb_has_help(string verb, string option)
    {
        foreach (var help in new[] { "--help", "-h" })
        {
            var (exit, stdout, stderr) = Run(verb, help);
            Assert.True(exit == 0, stderr);
            Assert.Contains(option, stdout);
        }
        var viaHelpVerb = Run("help", verb);
        Assert.Equal(0, viaHelpVerb.Exit);
        Assert.Contains(option, viaHelpVerb.Stdout);
    }

    [Fact]
    public void The_root_help_lists_the_verbs_and_where_to_get_the_weights()
    {
        foreach (var args in new[] { new[] { "--help" }, Array.Empty<string>() })
        {
            var (exit, stdout, stderr) = Run(args);
            Assert.True(exit == 0, stderr);
            foreach (var verb in new[] { "chat", "generate", "batch", "tokenize", "convert", "world", "world-score" }) Assert.Contains(verb, stdout);
            Assert.Contains("never downloads", stdout);
            Assert.Contains("minigpt4.json", stdout);
        }
    }

    [Fact]
    public void An_unknown_verb_is_an_error()
    {
        var (exit, stdout, stderr) = Run("frobnicate", "--model", "model.json");
        Assert.Equal(2, exit);
        Assert.Contains("'frobnicate'", stderr);
        Assert.Equal("", stdout);

        var typo = Run("generat", "--model", "model.json", "--prompt", "hi");
        Assert.Equal(2, typo.Exit);
        Assert.Contains("did you mean 'generate'", typo.Stderr);
    }

    [Fact]
    public void Convert_without_a_model_converts_the_bundled_toy_model()
    {
        using var tmp = new TempDir();
        var (exit, stdout, stderr) = Run("convert", "--out", tmp.Path);
        Assert.True(exit == 0, stderr);
        Assert.Contains("minigpt4.json", stdout);
        Assert.True(File.Exists(tmp.File("minigpt4.json")));
    }

    [Fact]
    public void A_library_error_exits_1()
    {
        using var tmp = new TempDir();
        var (exit, stdout, stderr) = Run("generate", "--model", tmp.File("missing.json"), "--prompt", "hi");
        Assert.Equal(1, exit);
        Assert.StartsWith("error: ", stderr);
        Assert.Equal("", stdout);
    }

    [SkippableFact]
    public void Generate_json_has_the_keys_scripts_parse()
    {
        var (exit, stdout, stderr) = Run("generate", "--model", Fixtures.Require("assets/stories260K"), "--prompt", "Once upon a time",
            "--raw", "--temperature", "0", "--max-new-tokens", "4", "--dtype", "float32", "--format", "json");
        Assert.True(exit == 0, stderr);
        var json = JsonNode.Parse(stdout)!.AsObject();
        Assert.Equal(
            ["text", "raw_text", "token_ids", "prompt", "segment_ids", "prompt_tokens", "generated_tokens", "finish_reason", "sequence_score", "usage", "timings"],
            json.Select(p => p.Key));
        Assert.Equal(["prompt_tokens", "generated_tokens", "truncated_prompt_tokens", "reused_prompt_tokens", "prefilled_prompt_tokens"],
            json["usage"]!.AsObject().Select(p => p.Key));
        Assert.Equal(["image_encode_ms", "prefill_ms", "decode_ms", "decode_tokens_per_s"], json["timings"]!.AsObject().Select(p => p.Key));
        Assert.Equal(4, json["generated_tokens"]!.GetValue<int>());
    }

    [SkippableFact]
    public void A_repeated_option_keeps_its_last_value()
    {
        var model = Fixtures.Require("assets/stories260K");
        var (exit, stdout, stderr) = Run("generate", "--model", model, "--prompt", "Once upon a time", "--raw", "--temperature", "0",
            "--max-new-tokens", "9", "--max-new-tokens", "3", "--dtype", "float32", "--format", "json");
        Assert.True(exit == 0, stderr);
        Assert.Equal(3, JsonNode.Parse(stdout)!["generated_tokens"]!.GetValue<int>());
    }

    [SkippableFact]
    public void Chat_reads_questions_from_stdin_and_writes_only_answers_to_stdout()
    {
        var (exit, stdout, stderr) = RunWithInput("What is in the image?\nWhat colour is it?\n",
            "chat", "--model", Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json"), "--image", Oracle.Image("a_gradient_shapes_640x480.png"),
            "--temperature", "0", "--max-new-tokens", "8", "--no-template-stops", "--dtype", "float32");
        Assert.True(exit == 0, stderr);
        Assert.Equal(2, System.Text.RegularExpressions.Regex.Matches(stderr, @"^\[\d+ tokens, .* tok/s, prefilled \d+ of \d+, .* s\]$",
            System.Text.RegularExpressions.RegexOptions.Multiline).Count);
        Assert.DoesNotContain("Ask about", stdout);
        Assert.DoesNotContain("> ", stdout);
        Assert.DoesNotContain("[load]", stdout);
        Assert.True(stdout.Count(c => c == '\n') >= 2, stdout);
    }
}
