using System.Text.Json;
using Xunit;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>The public enums serialise as strings with System.Text.Json (no options needed), and read back.</summary>
public sealed class JsonSerializationTests
{
    [Theory]
    [InlineData(MiniGptFinishReason.Stop, "\"stop\"")]
    [InlineData(MiniGptFinishReason.Length, "\"length\"")]
    [InlineData(MiniGptFinishReason.Cancelled, "\"cancelled\"")]
    public void Finish_reasons(MiniGptFinishReason value, string json) => RoundTrip(value, json);

    [Theory]
    [InlineData(MiniGptDType.Float32, "\"float32\"")]
    [InlineData(MiniGptDType.BFloat16, "\"bfloat16\"")]
    [InlineData(MiniGptDType.Float16, "\"float16\"")]
    public void Dtypes(MiniGptDType value, string json) => RoundTrip(value, json);

    [Theory]
    [InlineData(ModelVariant.MiniGpt4Vicuna0, "\"minigpt4-vicuna0\"")]
    [InlineData(ModelVariant.MiniGpt4Llama2, "\"minigpt4-llama2\"")]
    [InlineData(ModelVariant.MiniGptV2, "\"minigptv2\"")]
    public void Variants_by_their_manifest_names(ModelVariant value, string json) => RoundTrip(value, json);

    [Fact]
    public void Every_public_enum_has_a_name_for_every_value()
    {
        var enums = new[] { typeof(MiniGptFinishReason).Assembly, typeof(MiniGptPipeline).Assembly }
            .SelectMany(a => a.GetExportedTypes()).Where(t => t.IsEnum).ToArray();
        Assert.NotEmpty(enums);
        foreach (var type in enums)
            foreach (var value in Enum.GetValues(type))
            {
                var json = JsonSerializer.Serialize(value, type);
                Assert.True(json.StartsWith('"'), $"{type.Name}.{value} serialises as {json}");
                Assert.Equal(value, JsonSerializer.Deserialize(json, type));
            }
    }

    [Fact]
    public void Results_and_options_carry_their_enums_as_strings()
    {
        var response = new MiniGptResponse
        {
            Text = "a", RawText = "a", TokenIds = [1], FinishReason = MiniGptFinishReason.Length,
            Usage = new MiniGptUsage(3, 1, 0, 0, 3), Timings = new MiniGptTimings(0, 1, 2, 3), Prompt = "p", SegmentIds = [[1]],
        };
        var json = JsonSerializer.Serialize(response);
        Assert.Contains("\"FinishReason\":\"length\"", json);
        Assert.Equal(MiniGptFinishReason.Length, JsonSerializer.Deserialize<MiniGptResponse>(json)!.FinishReason);

        json = JsonSerializer.Serialize(new { DType = MiniGptDType.Float32, Variant = ModelVariant.MiniGptV2 });
        Assert.Equal("{\"DType\":\"float32\",\"Variant\":\"minigptv2\"}", json);
        // camelCase naming policies do not touch the enum names.
        json = JsonSerializer.Serialize(response, new JsonSerializerOptions(JsonSerializerDefaults.Web));
        Assert.Contains("\"finishReason\":\"length\"", json);
    }

    private static void RoundTrip<T>(T value, string json)
    {
        Assert.Equal(json, JsonSerializer.Serialize(value));
        Assert.Equal(value, JsonSerializer.Deserialize<T>(json));
    }
}
