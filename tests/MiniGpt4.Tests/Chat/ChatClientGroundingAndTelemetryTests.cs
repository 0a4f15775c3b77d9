using System.Diagnostics;
using Microsoft.Extensions.AI;
using MiniGpt4.Abstractions;
using MiniGpt4.Extensions.AI;
using MiniGpt4.Tests.Pipeline;
using MiniGpt4.Tests.Support;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Xunit;

namespace MiniGpt4.Tests.Chat;

/// <summary>
/// MiniGPT-v2's grounding boxes on the IChatClient's response, and the IChatClient's telemetry under Microsoft.Extensions.AI's
/// UseOpenTelemetry (the library's span nested under the client's, no metric name in common, nothing recorded twice).
/// </summary>
public sealed class ChatClientGroundingAndTelemetryTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    private static ChatOptions Greedy => new() { Temperature = 0, MaxOutputTokens = 12 };

    private static ChatMessage Ask(string question, string imagePath) =>
        new(ChatRole.User, [new DataContent(File.ReadAllBytes(imagePath), "image/png"), new TextContent(question)]);

    [Fact]
    public void A_hand_made_MiniGPT_v2_answer_gives_its_boxes_in_pixels_and_other_variants_give_none()
    {
        const string answer = "<p>a man</p> {<10><20><30><95>} riding <p>a bicycle</p> {<5><40><60><100>}<delim>{<0><0><100><50>}";
        var boxes = MiniGptChatClient.Grounding(ModelVariant.MiniGptV2, answer, (640, 480))!;
        Assert.Equal(MiniGptGrounding.Parse(answer, 640, 480), boxes);
        Assert.Equal(3, boxes.Count);
        Assert.Equal(new MiniGptGroundingBox("a man", 10, 20, 30, 95, 64, 96, 192, 456), boxes[0]);
        Assert.Equal("a bicycle", boxes[2].Phrase);
        Assert.Equal((0.0, 0.0, 640.0, 240.0), (boxes[2].Left, boxes[2].Top, boxes[2].Right, boxes[2].Bottom));
        Assert.Empty(MiniGptChatClient.Grounding(ModelVariant.MiniGptV2, "a man riding a bicycle", (640, 480))!);
        Assert.Null(MiniGptChatClient.Grounding(ModelVariant.MiniGptV2, answer, null)); // no image in the conversation
        Assert.Null(MiniGptChatClient.Grounding(ModelVariant.MiniGpt4Vicuna0, answer, (640, 480)));
    }

    [Fact]
    public void The_boxes_on_the_last_update_reach_the_response_put_together_from_the_updates()
    {
        IReadOnlyList<MiniGptGroundingBox> boxes = MiniGptGrounding.Parse("<p>a dog</p> {<12><30><55><90>}", 200, 100);
        var updates = new List<ChatResponseUpdate>
        {
            new(ChatRole.Assistant, "<p>a dog</p> {<12><30>") { ResponseId = "r", MessageId = "m" },
            new(ChatRole.Assistant, "<55><90>}")
            {
                ResponseId = "r", MessageId = "m", FinishReason = ChatFinishReason.Stop,
                AdditionalProperties = new() { [MiniGptChatClientExtensions.GroundingBoxesKey] = boxes },
            },
        };
        var response = updates.ToChatResponse();
        Assert.Same(boxes, response.GetGroundingBoxes());
        Assert.Same(boxes, Assert.Single(response.Messages).AdditionalProperties![MiniGptChatClientExtensions.GroundingBoxesKey]); // M.E.AI 11: the message's
        var box = Assert.Single(response.GetGroundingBoxes()!);
        Assert.Equal(("a dog", 12, 30, 55, 90), (box.Phrase, box.GridLeft, box.GridTop, box.GridRight, box.GridBottom));
        Assert.Equal(110, box.Right, 9); // 55 / 100 * 200
        Assert.Null(new ChatResponse(new ChatMessage(ChatRole.Assistant, "no boxes here")).GetGroundingBoxes());
    }

    [SkippableFact]
    public async Task The_random_weight_MiniGPT_v2_answers_a_grounding_question_with_no_box_and_MiniGPT_4_has_no_boxes_property()
    {
        var image = Oracle.Image("a_gradient_shapes_640x480.png");
        using var v2 = tiny.Get("minigptv2").AsIChatClient(new MiniGptChatClientOptions { MaxCachedConversations = 0 });
        var response = await v2.GetResponseAsync([Ask("[grounding] describe this image in detail", image)], Greedy);
        var streamed = await v2.GetStreamingResponseAsync([Ask("[grounding] describe this image in detail", image)], Greedy).ToChatResponseAsync();
        Assert.Equal(response.Text, streamed.Text);
        Assert.Equal(MiniGptGrounding.Parse(response.Text, 640, 480), response.GetGroundingBoxes()!);
        Assert.Empty(response.GetGroundingBoxes()!); // random weights write no box
        Assert.Empty(streamed.GetGroundingBoxes()!);
        Assert.Equal((640, 480), tiny.Get("minigptv2").GetImageSize(ImageInput.FromFile(image)));
        Assert.Equal((100, 300), tiny.Get("minigptv2").GetImageSize(ImageInput.FromFile(Oracle.Image("b_tall_100x300.jpg"))));

        using var v4 = tiny.Get("vicuna0").AsIChatClient(new MiniGptChatClientOptions { MaxCachedConversations = 0 });
        Assert.Null((await v4.GetResponseAsync([Ask("What is in the picture?", image)], Greedy)).GetGroundingBoxes());
    }

    [SkippableFact]
    public async Task The_image_size_for_the_boxes_is_the_size_the_model_is_given_with_EXIF_orientation_when_applied()
    {
        var jpeg = MiniGpt4.Tests.Imaging.TestImages.Encode(MiniGpt4.Tests.Imaging.TestImages.Quadrants(48, 32), 48, 32,
            new SixLabors.ImageSharp.Formats.Jpeg.JpegEncoder { Quality = 90 }, image =>
            {
                image.Metadata.ExifProfile = new SixLabors.ImageSharp.Metadata.Profiles.Exif.ExifProfile();
                image.Metadata.ExifProfile.SetValue(SixLabors.ImageSharp.Metadata.Profiles.Exif.ExifTag.Orientation, (ushort)6); // turned 90 degrees
            });
        Assert.Equal((48, 32), tiny.Get("minigptv2").GetImageSize(ImageInput.FromBytes(jpeg))); // as stored (the default, as PIL)
        using var oriented = await MiniGptPipeline.LoadAsync(Fixtures.Require("oracle/tiny/minigptv2/minigptv2.json"),
            new MiniGptLoadOptions { Images = new ImageDecodingOptions { ApplyExifOrientation = true } });
        Assert.Equal((32, 48), oriented.GetImageSize(ImageInput.FromBytes(jpeg)));
        Assert.Equal((640, 480), oriented.GetImageSize(ImageInput.FromFile(Oracle.Image("a_gradient_shapes_640x480.png"))));
    }

    [SkippableFact]
    public async Task Under_UseOpenTelemetry_each_request_has_one_library_span_under_the_client_span_and_no_shared_metric()
    {
        var app = "MiniGpt4.Tests.ChatClient." + Guid.NewGuid().ToString("N")[..8];
        var spans = new List<Activity>();
        var exported = new List<Metric>();
        List<Metric> metrics;
        var image = Oracle.Image("a_gradient_shapes_640x480.png");
        ChatResponse first, second;
        using (var tracing = Sdk.CreateTracerProviderBuilder().AddSource(app).AddSource(MiniGptDiagnostics.SourceName).AddInMemoryExporter(spans).Build())
        using (var meters = Sdk.CreateMeterProviderBuilder().AddMeter(app).AddMeter(MiniGptDiagnostics.SourceName).AddInMemoryExporter(exported).Build())
        {
            using var inner = tiny.Get("vicuna0").AsIChatClient();
            using var client = inner.AsBuilder().UseOpenTelemetry(sourceName: app).Build();
            List<ChatMessage> history = [Ask("What is in the picture?", image)];
            first = await client.GetResponseAsync(history, Greedy);
            // A replayed history, streamed: it reuses the cached conversation (no span or measurement for the reuse itself).
            history.AddRange(first.Messages);
            history.Add(new ChatMessage(ChatRole.User, "Which shape is bigger?"));
            second = await client.GetStreamingResponseAsync(history, Greedy).ToChatResponseAsync();
            meters.ForceFlush();
            metrics = [.. exported]; // disposing the provider exports the same metrics again
        }

        var outer = spans.Where(s => s.Source.Name == app).ToList();
        var library = spans.Where(s => s.Source.Name == MiniGptDiagnostics.SourceName).ToList();
        Assert.Equal(2, outer.Count);
        Assert.Equal(2, library.Count); // the IChatClient adds no span of its own: one engine span per answer
        foreach (var (client, response) in outer.Zip([first, second]))
        {
            Assert.Equal(ActivityKind.Client, client.Kind);
            var engine = Assert.Single(library, s => s.ParentSpanId == client.SpanId);
            Assert.Equal(client.TraceId, engine.TraceId);
            Assert.Equal(ActivityKind.Internal, engine.Kind);
            Assert.Equal("chat minigpt4-vicuna0", engine.DisplayName);
            // The same answer at two layers: the client's numbers are the ones the IChatClient reported.
            foreach (var s in new[] { client, engine })
            {
                Assert.Equal(response.Usage!.InputTokenCount, Convert.ToInt64(s.GetTagItem("gen_ai.usage.input_tokens")));
                Assert.Equal(response.Usage.OutputTokenCount, Convert.ToInt64(s.GetTagItem("gen_ai.usage.output_tokens")));
                Assert.Equal(response.Usage.CachedInputTokenCount, Convert.ToInt64(s.GetTagItem("gen_ai.usage.cache_read.input_tokens")));
            }
        }
        Assert.True(second.Usage!.CachedInputTokenCount > 0);

        var clientMetrics = metrics.Where(m => m.MeterName == app).Select(m => m.Name).ToHashSet();
        var serverMetrics = metrics.Where(m => m.MeterName == MiniGptDiagnostics.SourceName).Select(m => m.Name).ToHashSet();
        Assert.Contains("gen_ai.client.token.usage", clientMetrics);
        Assert.Contains("gen_ai.server.token.usage", serverMetrics);
        Assert.Empty(clientMetrics.Intersect(serverMetrics));
        // Token usage: two answers, each recorded once per layer (input and output).
        Assert.Equal(4, Points(metrics.Single(m => m.MeterName == MiniGptDiagnostics.SourceName && m.Name == "gen_ai.server.token.usage")));
        Assert.Equal(4, Points(metrics.Single(m => m.MeterName == app && m.Name == "gen_ai.client.token.usage")));
    }

    /// <summary>Recorded values of a histogram, over all its attribute sets.</summary>
    private static long Points(Metric metric)
    {
        long count = 0;
        foreach (ref readonly var point in metric.GetMetricPoints()) count += point.GetHistogramCount();
        return count;
    }
}
