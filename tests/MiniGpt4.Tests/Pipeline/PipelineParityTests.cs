using MiniGpt4.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>
/// The whole pipeline against the original MiniGPT-4 code's outputs (oracle/tiny/reference*.json):
/// prompt, segment ids, input embeddings, first-step logits, greedy and beam ids, answer text, two turns.
/// </summary>
public class PipelineParityTests(TinyPipelines tiny, ITestOutputHelper output) : IClassFixture<TinyPipelines>
{
    [SkippableTheory]
    [MemberData(nameof(Oracle.GreedyChatRuns), MemberType = typeof(Oracle))]
    public async Task Greedy_chat_matches_reference(string variant, string image, string run)
    {
        var chat = Oracle.Reference["variants"]![variant]!["chat"]![image]!;
        var r = chat["runs"]![run]!;
        var pipeline = tiny.Get(variant);
        var options = GenerationOptions.Greedy with
        {
            RepetitionPenalty = r["repetition_penalty"]!.GetValue<float>(),
            MaxNewTokens = 20,
            UseTemplateStops = false, // the oracle stops on EOS only
        };
        var response = await pipeline.AskAsync(ImageInput.FromFile(Oracle.Image(image)),
            chat["question"]!.GetValue<string>(), options);

        Assert.Equal(chat["prompt"]!.GetValue<string>(), response.Prompt);
        var segments = chat["segments"]!.AsArray();
        Assert.Equal(segments.Count, response.SegmentIds.Count);
        for (var i = 0; i < segments.Count; i++) Assert.Equal(Oracle.Ints(segments[i]!["ids"]), response.SegmentIds[i]);

        var (embeds, shape, logits) = tiny.LastPrefill[variant];
        var refEmbeds = Oracle.Array(chat["input_embeds"]!.GetValue<string>());
        Assert.Equal(refEmbeds.Shape, shape[1..]);
        var dEmb = Oracle.MaxAbsDiff(embeds, refEmbeds.ToFloat());
        var dLogits = Oracle.MaxAbsDiff(logits, Oracle.Array(chat["first_step_logits"]!.GetValue<string>()).ToFloat());
        output.WriteLine($"{variant}/{image}/{run}: input_embeds max|d| {dEmb:E2}, first-step logits max|d| {dLogits:E2}");
        Assert.True(dEmb <= 1e-4, $"input_embeds differ by {dEmb}");
        Assert.True(dLogits <= 1e-4, $"first-step logits differ by {dLogits}");

        Assert.Equal(Oracle.Ints(r["generated_ids"]), response.TokenIds);
        Assert.Equal(r["chat_answer_text"]!.GetValue<string>(), response.Text);
        Assert.Equal(r["decoded_skip_special"]!.GetValue<string>(), response.RawText);
        Assert.Equal(chat["input_embeds_len"]!.GetValue<int>(), response.Usage.PromptTokens);
        Assert.Equal(20, response.Usage.GeneratedTokens);
        Assert.Equal(MiniGptFinishReason.Length, response.FinishReason);
    }

    public static TheoryData<string, string, int> BeamCases()
    {
        var data = new TheoryData<string, string, int>();
        foreach (var v in new[] { "vicuna0", "llama2" })
            foreach (var img in new[] { "a_gradient_shapes_640x480.png", "b_tall_100x300.jpg" })
                foreach (var k in new[] { 2, 3 })
                    data.Add(v, img, k);
        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(BeamCases))]
    public async Task Beam_search_matches_reference(string variant, string image, int beams)
    {
        var c = Oracle.Extension["beam_search"]![variant]![image]![$"num_beams_{beams}"]!;
        var pipeline = tiny.Get(variant);
        var options = GenerationOptions.Greedy with { NumBeams = beams, MaxNewTokens = 20, LengthPenalty = 1f, UseTemplateStops = false };
        var response = await pipeline.AskAsync(ImageInput.FromFile(Oracle.Image(image)),
            Oracle.Extension["settings"]!["question"]!.GetValue<string>(), options);
        Assert.Equal(Oracle.Ints(c["generated_ids"]), response.TokenIds);
        Assert.Equal(c["chat_answer_text"]!.GetValue<string>(), response.Text);
        var score = c["sequences_score"]!.GetValue<double>();
        output.WriteLine($"{variant}/{image}/beams {beams}: score {response.SequenceScore} vs {score}");
        Assert.NotNull(response.SequenceScore);
        Assert.True(Math.Abs(response.SequenceScore!.Value - score) <= 1e-5, $"sequences_score {response.SequenceScore} vs {score}");
    }

    [SkippableTheory]
    [InlineData("vicuna0")]
    [InlineData("llama2")]
    [InlineData("minigptv2")]
    public async Task Two_turns_match_reference_and_reuse_the_common_prefix(string variant)
    {
        var mt = Oracle.Extension["multi_turn"]![variant]!;
        var turns = mt["turns"]!.AsArray();
        var pipeline = tiny.Get(variant);
        using var session = pipeline.CreateSession();
        session.AddImage(ImageInput.FromFile(Oracle.Image(mt["image"]!.GetValue<string>())));
        var options = GenerationOptions.Greedy with { MaxNewTokens = 20, UseTemplateStops = false };

        MiniGptResponse? first = null;
        for (var t = 0; t < turns.Count; t++)
        {
            var turn = turns[t]!;
            var response = await session.AskAsync(turn["question"]!.GetValue<string>(), options);
            Assert.Equal(turn["prompt"]!.GetValue<string>(), response.Prompt);
            var segments = turn["segments"]!.AsArray();
            for (var i = 0; i < segments.Count; i++) Assert.Equal(Oracle.Ints(segments[i]!["ids"]), response.SegmentIds[i]);
            var d = Oracle.MaxAbsDiff(tiny.LastPrefill[variant].Logits, Oracle.Array(turn["first_step_logits"]!.GetValue<string>()).ToFloat());
            output.WriteLine($"{variant} turn {t + 1}: first-step logits max|d| {d:E2}; usage {response.Usage}");
            Assert.True(d <= 1e-4, $"turn {t + 1} first-step logits differ by {d}");
            Assert.Equal(Oracle.Ints(turn["generated_ids"]), response.TokenIds);
            Assert.Equal(turn["chat_answer_text"]!.GetValue<string>(), response.Text);
            Assert.Equal(turn["input_embeds_len"]!.GetValue<int>(), response.Usage.PromptTokens);
            if (t == 0)
            {
                first = response;
                Assert.Equal(0, response.Usage.ReusedPromptTokens);
            }
            else
            {
                // Reused: everything up to the image's end, plus the tokens after it that turn 2 re-tokenizes identically.
                var reused = turn["image_token_offset"]!.GetValue<int>() + turn["image_tokens"]!.GetValue<int>()
                             + mt["after_image_common_prefix_with_turn2"]!.GetValue<int>();
                Assert.Equal(reused, response.Usage.ReusedPromptTokens);
                Assert.Equal(response.Usage.PromptTokens - reused, response.Usage.PrefilledPromptTokens);
            }
        }
        Assert.NotNull(first);
        Assert.Equal(4, session.History.Count);
    }
}

/// <summary>MiniGPT-v2 (448 px, concat projector, LoRA merged at load) against the oracle's extension.</summary>
public class MiniGptV2ParityTests(TinyPipelines tiny, ITestOutputHelper output) : IClassFixture<TinyPipelines>
{
    [SkippableTheory]
    [InlineData("vqa", "a_gradient_shapes_640x480.png", "rp_1.0")]
    [InlineData("vqa", "a_gradient_shapes_640x480.png", "rp_1.05")]
    [InlineData("vqa", "b_tall_100x300.jpg", "rp_1.0")]
    [InlineData("vqa", "b_tall_100x300.jpg", "rp_1.05")]
    [InlineData("grounding", "a_gradient_shapes_640x480.png", "rp_1.0")]
    [InlineData("grounding", "a_gradient_shapes_640x480.png", "rp_1.05")]
    public async Task Chat_matches_reference(string task, string image, string run)
    {
        var chat = Oracle.Extension["minigptv2"]!["chat"]![task]![image]!;
        var r = chat["runs"]![run]!;
        var pipeline = tiny.Get("minigptv2");
        var options = GenerationOptions.Greedy with { RepetitionPenalty = r["repetition_penalty"]!.GetValue<float>(), MaxNewTokens = 20 };
        var response = await pipeline.AskAsync(ImageInput.FromFile(Oracle.Image(image)), chat["question"]!.GetValue<string>(), options);
        Assert.Equal(chat["prompt"]!.GetValue<string>(), response.Prompt);
        var segments = chat["segments"]!.AsArray();
        for (var i = 0; i < segments.Count; i++) Assert.Equal(Oracle.Ints(segments[i]!["ids"]), response.SegmentIds[i]);
        var (embeds, _, logits) = tiny.LastPrefill["minigptv2"];
        var dEmb = Oracle.MaxAbsDiff(embeds, Oracle.Array(chat["input_embeds"]!.GetValue<string>()).ToFloat());
        var dLogits = Oracle.MaxAbsDiff(logits, Oracle.Array(chat["first_step_logits"]!.GetValue<string>()).ToFloat());
        output.WriteLine($"v2 {task}/{image}/{run}: input_embeds max|d| {dEmb:E2}, first-step logits max|d| {dLogits:E2}");
        Assert.True(dEmb <= 1e-4, $"input_embeds differ by {dEmb}");
        Assert.True(dLogits <= 5e-4, $"first-step logits differ by {dLogits}");
        Assert.Equal(Oracle.Ints(r["generated_ids"]), response.TokenIds);
        Assert.Equal(r["chat_answer_text"]!.GetValue<string>(), response.Text);
    }
}
