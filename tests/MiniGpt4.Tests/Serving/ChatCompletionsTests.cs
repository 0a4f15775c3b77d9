using System.ClientModel;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using MiniGpt4.Tests.Support;
using OpenAI;
using OpenAI.Chat;
using Xunit;

namespace MiniGpt4.Tests.Serving;

/// <summary>/v1/chat/completions driven by the official OpenAI .NET client and by raw HTTP, on one host.</summary>
public class ChatCompletionsTests(ServingFixture fixture) : IClassFixture<ServingFixture>
{
    private const string Question = "Describe this image in detail.";

    private ServingHost Host => fixture.Host;

    private ChatClient OpenAiClient() => new("minigpt4", new ApiKeyCredential(ServingFixture.ApiKey),
        new OpenAIClientOptions { Endpoint = new Uri(Host.BaseAddress, "v1") });

    /// <summary>The oracle's greedy answer (demo repetition penalty 1.05) to <see cref="Question"/> about image a, 20 tokens.</summary>
    private static string OracleAnswer() =>
        Oracle.Reference["variants"]!["vicuna0"]!["chat"]!["a_gradient_shapes_640x480.png"]!["runs"]!["rp_1.05"]!["chat_answer_text"]!.GetValue<string>();

    [SkippableFact]
    public async Task Plain_and_streamed_answers_through_the_OpenAI_client_are_the_oracle_answer()
    {
        var client = OpenAiClient();
        var png = await File.ReadAllBytesAsync(Oracle.Image("a_gradient_shapes_640x480.png"));
        List<ChatMessage> messages = [new UserChatMessage(ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(png), "image/png"), ChatMessageContentPart.CreateTextPart(Question))];
        var options = new ChatCompletionOptions { Temperature = 0f, MaxOutputTokenCount = 20 };

        ChatCompletion plain = await client.CompleteChatAsync(messages, options);
        Assert.Equal(OracleAnswer(), plain.Content[0].Text.Trim());
        Assert.Equal(ChatFinishReason.Length, plain.FinishReason);
        Assert.Equal(20, plain.Usage.OutputTokenCount);
        Assert.True(plain.Usage.InputTokenCount > 32, "the prompt holds the image's 32 positions and the text");
        Assert.Equal(plain.Usage.InputTokenCount + plain.Usage.OutputTokenCount, plain.Usage.TotalTokenCount);

        var streamed = new StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        var chunks = 0;
        await foreach (var update in client.CompleteChatStreamingAsync(messages, options))
        {
            chunks++;
            foreach (var part in update.ContentUpdate) streamed.Append(part.Text);
            usage = update.Usage ?? usage;
            finish = update.FinishReason ?? finish;
        }
        Assert.True(chunks > 3, $"the answer came in pieces ({chunks} chunks)");
        Assert.Equal(plain.Content[0].Text, streamed.ToString());
        Assert.Equal(ChatFinishReason.Length, finish);
        Assert.NotNull(usage); // the client asks for stream_options.include_usage
        Assert.Equal(plain.Usage.OutputTokenCount, usage!.OutputTokenCount);
    }

    [SkippableFact]
    public async Task Raw_stream_is_chunks_then_usage_then_done_and_concatenates_to_the_plain_answer()
    {
        JsonObject Body(bool stream) => new()
        {
            ["model"] = "anything-goes",
            ["messages"] = new JsonArray(ServingHost.User(Question, ServingHost.DataUri("b_tall_100x300.jpg"))),
            ["temperature"] = 0, ["max_tokens"] = 12, ["stream"] = stream,
            ["stream_options"] = new JsonObject { ["include_usage"] = true }, // ignored when not streaming
        };
        using var plainResponse = await Host.PostAsync(Body(false));
        Assert.Equal(HttpStatusCode.OK, plainResponse.StatusCode);
        var plain = JsonNode.Parse(await plainResponse.Content.ReadAsStringAsync())!;
        Assert.Equal("chat.completion", plain["object"]!.GetValue<string>());
        var content = plain["choices"]![0]!["message"]!["content"]!.GetValue<string>();
        Assert.Equal("length", plain["choices"]![0]!["finish_reason"]!.GetValue<string>());
        Assert.Equal(12, plain["usage"]!["completion_tokens"]!.GetValue<int>());

        using var response = await Host.PostAsync(Body(true), HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        var events = new List<string>();
        await foreach (var e in ServingHost.EventsAsync(response)) events.Add(e);
        Assert.Equal("[DONE]", events[^1]);
        var chunks = events[..^1].Select(e => JsonNode.Parse(e)!).ToList();
        Assert.All(chunks, c => Assert.Equal("chat.completion.chunk", c["object"]!.GetValue<string>()));
        var text = string.Concat(chunks.Where(c => c["choices"]!.AsArray().Count > 0).Select(c => c["choices"]![0]!["delta"]!["content"]?.GetValue<string>()));
        Assert.Equal(content, text);
        var usage = chunks[^1];
        Assert.Empty(usage["choices"]!.AsArray());
        foreach (var count in new[] { "prompt_tokens", "completion_tokens", "total_tokens" })
            Assert.Equal(plain["usage"]![count]!.GetValue<long>(), usage["usage"]![count]!.GetValue<long>());
        Assert.Equal("length", chunks[^2]["choices"]![0]!["finish_reason"]!.GetValue<string>());
    }

    [SkippableFact]
    public async Task A_second_turn_with_history_is_the_answer_of_a_live_session()
    {
        var pipeline = Host.Model.GetPipeline();
        var greedy = pipeline.DefaultGenerationOptions with { DoSample = false, Temperature = 0, MaxNewTokens = 10 };
        using var session = pipeline.CreateSession();
        session.AddImage(ImageInput.FromFile(Oracle.Image("a_gradient_shapes_640x480.png")));
        var first = await session.AskAsync(Question, greedy);
        var second = await session.AskAsync("What colour is it?", greedy);

        using var response = await Host.PostAsync(new JsonObject
        {
            ["messages"] = new JsonArray(
                ServingHost.User(Question, ServingHost.DataUri("a_gradient_shapes_640x480.png")),
                new JsonObject { ["role"] = "assistant", ["content"] = first.Text },
                new JsonObject { ["role"] = "user", ["content"] = "What colour is it?" }),
            ["temperature"] = 0, ["max_tokens"] = 10,
        });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var json = JsonNode.Parse(await response.Content.ReadAsStringAsync())!;
        Assert.Equal(second.Text, json["choices"]![0]!["message"]!["content"]!.GetValue<string>());
    }

    [SkippableFact]
    public async Task Several_images_in_one_message_are_all_in_the_prompt()
    {
        JsonObject Body(params string[] images) => new()
        {
            ["messages"] = new JsonArray(ServingHost.User("Compare these.", images.Select(ServingHost.DataUri).ToArray())),
            ["temperature"] = 0, ["max_tokens"] = 4,
        };
        using var one = await Host.PostAsync(Body("c_square_224x224.png"));
        using var two = await Host.PostAsync(Body("c_square_224x224.png", "d_rgba_300x180.png"));
        Assert.Equal(HttpStatusCode.OK, two.StatusCode);
        var p1 = JsonNode.Parse(await one.Content.ReadAsStringAsync())!["usage"]!["prompt_tokens"]!.GetValue<int>();
        var p2 = JsonNode.Parse(await two.Content.ReadAsStringAsync())!["usage"]!["prompt_tokens"]!.GetValue<int>();
        var perImage = Host.Model.GetPipeline().Projector!.TokensPerImage;
        Assert.True(p2 >= p1 + perImage, $"two images ({p2} prompt tokens) hold one more image's {perImage} positions than one ({p1})");
    }

    [SkippableFact]
    public async Task Concurrent_greedy_answers_equal_the_sequential_ones_without_a_429()
    {
        var images = new[] { "a_gradient_shapes_640x480.png", "b_tall_100x300.jpg", "c_square_224x224.png", "d_rgba_300x180.png" };
        var bodies = Enumerable.Range(0, 8).Select(i => new JsonObject
        {
            ["messages"] = new JsonArray(ServingHost.User(i % 2 == 0 ? Question : "What is in the picture?", ServingHost.DataUri(images[i % 4]))),
            ["temperature"] = 0, ["max_tokens"] = 8,
        }.ToJsonString()).ToArray();
        async Task<string> Ask(string body)
        {
            using var r = await Host.PostRawAsync(body);
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            return JsonNode.Parse(await r.Content.ReadAsStringAsync())!["choices"]![0]!["message"]!["content"]!.GetValue<string>();
        }
        var sequential = new List<string>();
        foreach (var b in bodies) sequential.Add(await Ask(b));
        var concurrent = await Task.WhenAll(bodies.Select(b => Task.Run(() => Ask(b))));
        Assert.Equal(sequential, concurrent);
    }

    [SkippableFact]
    public async Task Models_health_page_and_metrics()
    {
        var models = JsonNode.Parse(await Host.Http.GetStringAsync("v1/models"))!;
        Assert.Equal(Host.Model.ModelId, models["data"]![0]!["id"]!.GetValue<string>());
        foreach (var path in new[] { "health", "healthz" })
        {
            using var health = await Host.Http.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, health.StatusCode);
            Assert.Equal("Healthy", JsonNode.Parse(await health.Content.ReadAsStringAsync())!["status"]!.GetValue<string>());
        }
        using (var page = await Host.Http.GetAsync(""))
        {
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            Assert.Equal("text/html", page.Content.Headers.ContentType?.MediaType);
        }
        using (var answer = await Host.PostAsync(new JsonObject
        {
            ["messages"] = new JsonArray(ServingHost.User("Hi", ServingHost.DataUri("e_gray_50x40.png"))), ["max_tokens"] = 3, ["temperature"] = 0,
        }))
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        var metrics = await Host.Http.GetStringAsync("metrics");
        Assert.Contains("gen_ai_server_request_duration", metrics);
        Assert.Contains("gen_ai_server_token_usage", metrics);
        Assert.Contains("gen_ai_token_type=\"output\"", metrics);
    }

    [SkippableFact]
    public async Task The_API_key_is_required_on_v1()
    {
        using var anonymous = new HttpClient { BaseAddress = Host.BaseAddress };
        using var response = await anonymous.PostAsync("v1/chat/completions", new StringContent("{}", Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("invalid_api_key", (await ServingHost.ErrorAsync(response))["code"]!.GetValue<string>());
        using var health = await anonymous.GetAsync("health");
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }
}
