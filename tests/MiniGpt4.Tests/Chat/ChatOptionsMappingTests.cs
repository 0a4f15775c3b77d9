using System.Text.Json;
using Microsoft.Extensions.AI;
using MiniGpt4.Extensions.AI;
using MiniGpt4.Tests.Pipeline;
using Xunit;

namespace MiniGpt4.Tests.Chat;

/// <summary>Every <see cref="ChatOptions"/> field maps to <see cref="GenerationOptions"/> or is refused.</summary>
public class ChatOptionsMappingTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    /// <summary>What happens to each ChatOptions property (a new property in a later M.E.AI fails the coverage test).</summary>
    private static readonly Dictionary<string, string> Handling = new()
    {
        ["Temperature"] = "mapped", ["TopP"] = "mapped", ["TopK"] = "mapped", ["MaxOutputTokens"] = "mapped", ["Seed"] = "mapped",
        ["StopSequences"] = "mapped", ["AdditionalProperties"] = "mapped", ["Instructions"] = "system prompt",
        ["RawRepresentationFactory"] = "base options", ["ModelId"] = "checked",
        ["Tools"] = "refused", ["ToolMode"] = "refused when a tool is required", ["AllowMultipleToolCalls"] = "no tools: nothing to call",
        ["ResponseFormat"] = "refused when JSON", ["FrequencyPenalty"] = "refused", ["PresencePenalty"] = "refused", ["Reasoning"] = "refused",
        ["ConversationId"] = "refused", ["AllowBackgroundResponses"] = "refused", ["ContinuationToken"] = "refused",
    };

    private GenerationOptions Map(ChatOptions? options)
    {
        var p = tiny.Get("vicuna0");
        using var client = p.AsIChatClient();
        return OptionsMapper.Map(options, client, p, "minigpt4-vicuna0");
    }

    [Fact]
    public void Every_ChatOptions_property_has_a_documented_handling()
    {
        var properties = typeof(ChatOptions).GetProperties().Select(p => p.Name).ToHashSet();
        Assert.Empty(properties.Except(Handling.Keys));
        Assert.Empty(Handling.Keys.Except(properties));
    }

    [SkippableFact]
    public void Without_options_the_variants_defaults_apply()
    {
        Assert.Equal(tiny.Get("vicuna0").DefaultGenerationOptions, Map(null));
        Assert.Equal(tiny.Get("vicuna0").DefaultGenerationOptions, Map(new ChatOptions()));
    }

    [SkippableFact]
    public void The_direct_fields_map()
    {
        var g = Map(new ChatOptions { Temperature = 0.7f, TopP = 0.5f, TopK = 7, MaxOutputTokens = 33, Seed = 42, StopSequences = ["END", "STOP"] });
        Assert.Equal(0.7f, g.Temperature);
        Assert.Equal(0.5f, g.TopP);
        Assert.Equal(7, g.TopK);
        Assert.Equal(33, g.MaxNewTokens);
        Assert.Equal(42L, g.Seed);
        Assert.Equal(["END", "STOP"], g.StopStrings);
        Assert.True(Map(new ChatOptions { Temperature = 0 }).IsGreedy);
        var untouched = tiny.Get("vicuna0").DefaultGenerationOptions;
        Assert.Equal(untouched with { Temperature = 0.7f, TopP = 0.5f, TopK = 7, MaxNewTokens = 33, Seed = 42, StopStrings = g.StopStrings }, g);
    }

    public static TheoryData<string, object, Func<GenerationOptions, object>, object> Extras => new()
    {
        { "repetition_penalty", 1.2f, g => g.RepetitionPenalty, 1.2f },
        { "repetition_penalty", JsonDocument.Parse("1.25").RootElement, g => g.RepetitionPenalty, 1.25f },
        { "num_beams", 3, g => g.NumBeams, 3 },
        { "num_beams", 3L, g => g.NumBeams, 3 },
        { "length_penalty", 0.5, g => g.LengthPenalty, 0.5f },
        { "min_new_tokens", 2, g => g.MinNewTokens, 2 },
        { "do_sample", false, g => g.DoSample, false },
        { "use_template_stops", false, g => g.UseTemplateStops, false },
        { "max_context_length", 900, g => g.MaxContextLength, 900 },
        { "truncate_prompt_from_left", true, g => g.TruncatePromptFromLeft, true },
        { "truncate_prompt_from_left", JsonDocument.Parse("true").RootElement, g => g.TruncatePromptFromLeft, true },
    };

    [SkippableTheory]
    [MemberData(nameof(Extras))]
    public void Our_extras_map_through_AdditionalProperties(string key, object value, Func<GenerationOptions, object> read, object expected)
    {
        var g = Map(new ChatOptions { AdditionalProperties = new() { [key] = value } });
        Assert.Equal(expected, read(g));
    }

    [SkippableFact]
    public void Every_extra_key_is_tested()
    {
        var tested = Extras.Select(row => (string)row[0]).ToHashSet();
        Assert.Equal(OptionsMapper.Extras.Keys.Order(), tested.Order());
    }

    [SkippableFact]
    public void A_raw_GenerationOptions_is_the_starting_point()
    {
        var raw = GenerationOptions.Greedy with { MaxNewTokens = 5, NumBeams = 2 };
        var g = Map(new ChatOptions { RawRepresentationFactory = _ => raw, MaxOutputTokens = 7 });
        Assert.Equal(raw with { MaxNewTokens = 7 }, g);
    }

    public static TheoryData<string> Refused => new()
    {
        "tools", "tool-required", "json", "json-schema", "frequency", "presence", "reasoning", "conversation", "background", "continuation",
        "model", "unknown-extra",
    };

    [SkippableTheory]
    [MemberData(nameof(Refused))]
    public async Task What_cannot_be_honoured_is_refused_before_anything_runs(string kind)
    {
        var options = kind switch
        {
            "tools" => new ChatOptions { Tools = [AIFunctionFactory.Create(() => 1, "one")] },
            "tool-required" => new ChatOptions { ToolMode = ChatToolMode.RequireAny },
            "json" => new ChatOptions { ResponseFormat = ChatResponseFormat.Json },
            "json-schema" => new ChatOptions { ResponseFormat = ChatResponseFormat.ForJsonSchema(JsonDocument.Parse("{\"type\":\"object\"}").RootElement) },
            "frequency" => new ChatOptions { FrequencyPenalty = 0.5f },
            "presence" => new ChatOptions { PresencePenalty = 0.5f },
            "reasoning" => new ChatOptions { Reasoning = new ReasoningOptions() },
            "conversation" => new ChatOptions { ConversationId = "c1" },
            "background" => new ChatOptions { AllowBackgroundResponses = true },
            "continuation" => new ChatOptions { ContinuationToken = ResponseContinuationToken.FromBytes(new byte[] { 1 }) },
            "model" => new ChatOptions { ModelId = "gpt-4o" },
            _ => new ChatOptions { AdditionalProperties = new() { ["beam_width"] = 3 } },
        };
        var p = tiny.Get("vicuna0");
        using var client = p.AsIChatClient();
        var before = p.ActiveRequests + p.QueuedRequests;
        await Assert.ThrowsAsync<NotSupportedException>(() => client.GetResponseAsync([new ChatMessage(ChatRole.User, "hi")], options));
        Assert.Equal(before, p.ActiveRequests + p.QueuedRequests);
    }

    [SkippableFact]
    public void What_is_honoured_without_tools_is_accepted()
    {
        var g = Map(new ChatOptions { ToolMode = ChatToolMode.Auto, AllowMultipleToolCalls = true, ResponseFormat = ChatResponseFormat.Text, ModelId = "minigpt4-vicuna0", Tools = [] });
        Assert.Equal(tiny.Get("vicuna0").DefaultGenerationOptions, g);
    }

    [SkippableFact]
    public void A_bad_extra_value_names_its_key()
    {
        var e = Assert.Throws<ArgumentException>(() => Map(new ChatOptions { AdditionalProperties = new() { ["num_beams"] = "three" } }));
        Assert.Contains("num_beams", e.Message);
    }
}
