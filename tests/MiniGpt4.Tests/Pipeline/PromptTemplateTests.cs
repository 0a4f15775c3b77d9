using MiniGpt4.Prompting;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Pipeline;

public class PromptTemplateTests
{
    private const string Question = "Describe this image in detail.";

    [SkippableTheory]
    [InlineData("vicuna0", ModelVariant.MiniGpt4Vicuna0)]
    [InlineData("llama2", ModelVariant.MiniGpt4Llama2)]
    public void Single_turn_prompt_equals_reference(string variant, ModelVariant v)
    {
        var chat = Oracle.Reference["variants"]![variant]!["chat"]!["a_gradient_shapes_640x480.png"]!;
        var conv = new Conversation();
        conv.AddImage();
        conv.Ask(chat["question"]!.GetValue<string>());
        Assert.Equal(chat["prompt"]!.GetValue<string>(), ModelPreset.For(v).Template.Render(conv.Messages, out _));
    }

    [SkippableTheory]
    [InlineData("vicuna0", ModelVariant.MiniGpt4Vicuna0)]
    [InlineData("llama2", ModelVariant.MiniGpt4Llama2)]
    [InlineData("minigptv2", ModelVariant.MiniGptV2)]
    public void Two_turn_prompts_equal_reference(string variant, ModelVariant v)
    {
        var turns = Oracle.Extension["multi_turn"]![variant]!["turns"]!.AsArray();
        var conv = new Conversation();
        conv.AddImage();
        foreach (var turn in turns)
        {
            conv.Ask(turn!["question"]!.GetValue<string>());
            Assert.Equal(turn["prompt"]!.GetValue<string>(), ModelPreset.For(v).Template.Render(conv.Messages, out _));
            conv.AddAnswer(turn["chat_answer_text"]!.GetValue<string>());
        }
    }

    [Fact]
    public void Question_without_image_is_its_own_message()
    {
        var conv = new Conversation();
        conv.Ask("Hi");
        Assert.Equal("Give the following image: <Img>ImageContent</Img>. You will be able to see the image once I provide it to you. Please answer my questions.###Human: Hi###Assistant: ",
            ConversationTemplate.Vicuna0.Render(conv.Messages, out _));
        Assert.Equal("<s>[INST] Hi [/INST]", ConversationTemplate.MiniGptV2.Render(conv.Messages, out _));
    }

    [Fact]
    public void Second_image_after_an_answer_starts_a_new_user_message()
    {
        var conv = new Conversation();
        conv.AddImage();
        conv.Ask("Q1");
        conv.AddAnswer("A1");
        conv.AddImage();
        conv.Ask("Q2");
        Assert.Equal(2, conv.Messages.Count(m => m.HasImage));
        Assert.Equal("<s>[INST] <Img><ImageHere></Img> Q1 [/INST]A1<s>[INST] <Img><ImageHere></Img> Q2 [/INST]",
            ConversationTemplate.MiniGptV2.Render(conv.Messages, out _));
    }

    [Theory]
    // Chat.answer: split('###')[0], then split('Assistant:')[-1], then str.strip().
    [InlineData("  a red circle  ", "a red circle")]
    [InlineData("a red circle###Human: more", "a red circle")]
    [InlineData("###", "")]
    [InlineData("Assistant: a cat", "a cat")]
    [InlineData("x Assistant: y Assistant:  z \n", "z")]
    [InlineData("Assistant: a###Assistant: b", "a")]
    [InlineData("\u001c\u00a0text\u2003\u001f", "text")]  // Python counts U+001C..U+001F as whitespace
    [InlineData("\u200btext", "\u200btext")]               // zero-width space is not whitespace in Python
    [InlineData("no markers", "no markers")]
    public void Answer_post_processing_matches_Chat_answer(string decoded, string expected)
        => Assert.Equal(expected, AnswerPostProcessor.Process(decoded));

    [SkippableFact]
    public void Post_processing_reproduces_every_oracle_answer()
    {
        var variants = Oracle.Reference["variants"]!.AsObject();
        var n = 0;
        foreach (var (_, v) in variants)
            foreach (var (_, chat) in v!["chat"]!.AsObject())
                foreach (var (_, run) in chat!["runs"]!.AsObject())
                {
                    Assert.Equal(run!["chat_answer_text"]!.GetValue<string>(), AnswerPostProcessor.Process(run["decoded_skip_special"]!.GetValue<string>()));
                    n++;
                }
        Assert.True(n >= 8);
    }
}

public class StreamCutTests
{
    /// <summary>Streams <paramref name="deltas"/> through the cut and returns what was sent.</summary>
    private static string Stream(IEnumerable<string> deltas)
    {
        var cut = new AnswerStreamCut();
        var sent = new System.Text.StringBuilder();
        foreach (var d in deltas)
        {
            sent.Append(cut.Push(d));
            Assert.StartsWith(sent.ToString(), cut.Raw); // sent text is never taken back
        }
        return sent.Append(cut.Finish()).ToString();
    }

    [Theory]
    [InlineData("a red circle###Human: more")]
    [InlineData("###")]
    [InlineData("a # b ## c ### d ### e")]
    [InlineData("ends with ##")]
    [InlineData("no marker at all")]
    [InlineData("#a##b###")]
    public void Streamed_text_is_what_precedes_the_first_marker_for_every_split(string text)
    {
        var cut = text.IndexOf("###", StringComparison.Ordinal);
        var expected = cut >= 0 ? text[..cut] : text;
        Assert.Equal(expected, Stream(text.Select(c => c.ToString())));     // one char at a time
        for (var i = 0; i <= text.Length; i++)
            Assert.Equal(expected, Stream(new[] { text[..i], text[i..] })); // every two-piece split
    }
}
