using System.Buffers.Binary;
using System.Net;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace MiniGpt4.Tests.Serving;

/// <summary>Field rules and error statuses of /v1/chat/completions, each with OpenAI's error shape.</summary>
public class ChatCompletionErrorTests(ServingFixture fixture) : IClassFixture<ServingFixture>
{
    private ServingHost Host => fixture.Host;

    private static JsonObject Body(Action<JsonObject>? change = null)
    {
        var body = new JsonObject
        {
            ["model"] = "minigpt4",
            ["messages"] = new JsonArray(ServingHost.User("Describe this image.", ServingHost.DataUri("e_gray_50x40.png"))),
            ["max_tokens"] = 3, ["temperature"] = 0,
        };
        change?.Invoke(body);
        return body;
    }

    private async Task<JsonObject> Refused(HttpStatusCode status, JsonNode body)
    {
        using var response = await Host.PostAsync(body);
        Assert.Equal(status, response.StatusCode);
        return await ServingHost.ErrorAsync(response);
    }

    [SkippableFact]
    public async Task Fields_clients_commonly_send_are_ignored()
    {
        using var response = await Host.PostAsync(Body(b =>
        {
            b["user"] = "someone"; b["store"] = false; b["metadata"] = new JsonObject { ["k"] = "v" };
            b["stream_options"] = new JsonObject { ["include_usage"] = true }; b["n"] = 1;
        }));
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [SkippableTheory]
    [InlineData("tools", "[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}]")]
    [InlineData("response_format", "{\"type\":\"json_object\"}")]
    [InlineData("logprobs", "true")]
    [InlineData("n", "2")]
    public async Task Known_fields_that_cannot_be_honoured_are_400s_naming_the_field(string field, string value)
    {
        var error = await Refused(HttpStatusCode.BadRequest, Body(b => b[field] = JsonNode.Parse(value)));
        Assert.Equal(field, error["param"]!.GetValue<string>());
        Assert.Contains(field, error["message"]!.GetValue<string>());
    }

    [SkippableTheory]
    [InlineData("temprature", "temperature")]
    [InlineData("max_token", "max_tokens")]
    [InlineData("top-p", "top_p")]
    public async Task An_unknown_field_near_a_known_one_is_a_400_naming_both(string typo, string known)
    {
        var error = await Refused(HttpStatusCode.BadRequest, Body(b => b[typo] = 1));
        var message = error["message"]!.GetValue<string>();
        Assert.Contains($"'{typo}'", message);
        Assert.Contains($"'{known}'", message);
        Assert.Equal(typo, error["param"]!.GetValue<string>());
    }

    [SkippableTheory]
    [InlineData("temperature", "\"hot\"")]
    [InlineData("max_tokens", "1.5")]
    [InlineData("stream", "\"yes\"")]
    [InlineData("messages", "\"hello\"")]
    [InlineData("stop", "[1, 2]")]
    public async Task Wrong_types_are_400s_naming_the_field(string field, string value)
    {
        var error = await Refused(HttpStatusCode.BadRequest, Body(b => b[field] = JsonNode.Parse(value)));
        Assert.Equal(field, error["param"]!.GetValue<string>());
    }

    [SkippableFact]
    public async Task Missing_messages_and_malformed_json_are_400s()
    {
        var missing = await Refused(HttpStatusCode.BadRequest, Body(b => b.Remove("messages")));
        Assert.Equal("messages", missing["param"]!.GetValue<string>());
        using var response = await Host.PostRawAsync("{\"messages\": [");
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("invalid_json", (await ServingHost.ErrorAsync(response))["code"]!.GetValue<string>());
    }

    [SkippableFact]
    public async Task Undecodable_and_huge_declared_images_are_refused_without_decoding()
    {
        var random = new byte[4096];
        new Random(7).NextBytes(random);
        var garbage = await Refused(HttpStatusCode.BadRequest, Body(b => b["messages"] = new JsonArray(
            ServingHost.User("What is this?", "data:image/png;base64," + Convert.ToBase64String(random)))));
        Assert.Equal("invalid_image", garbage["code"]!.GetValue<string>());

        using var response = await Host.PostAsync(Body(b => b["messages"] = new JsonArray(
            ServingHost.User("What is this?", "data:image/png;base64," + Convert.ToBase64String(PngHeader(60000, 60000))))));
        Assert.True(response.StatusCode is HttpStatusCode.BadRequest or HttpStatusCode.RequestEntityTooLarge, response.StatusCode.ToString());
        var huge = await ServingHost.ErrorAsync(response);
        Assert.Equal("invalid_image", huge["code"]!.GetValue<string>());
    }

    [SkippableFact]
    public async Task A_body_over_the_limit_is_413()
    {
        var limit = Host.App.Services.GetRequiredService<Microsoft.Extensions.Options.IOptions<MiniGpt4.WebHost.ServerOptions>>().Value.MaxRequestBodyBytes;
        var body = "{\"messages\":[{\"role\":\"user\",\"content\":\"" + new string('a', (int)limit) + "\"}]}";
        // Expect: 100-continue lets the server refuse on Content-Length before the client sends the body.
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.ExpectContinue = true;
        using var response = await Host.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Equal("request_too_large", (await ServingHost.ErrorAsync(response))["code"]!.GetValue<string>());
    }

    [SkippableFact]
    public async Task A_prompt_too_long_for_the_context_is_context_length_exceeded()
    {
        var text = string.Join(' ', Enumerable.Repeat("describe the colours of this image", 600));
        var error = await Refused(HttpStatusCode.BadRequest, Body(b => b["messages"] = new JsonArray(ServingHost.User(text, ServingHost.DataUri("e_gray_50x40.png")))));
        Assert.Equal("context_length_exceeded", error["code"]!.GetValue<string>());
    }

    [SkippableFact]
    public async Task Image_urls_are_refused_unless_their_host_is_allowed()
    {
        var error = await Refused(HttpStatusCode.BadRequest, Body(b => b["messages"] = new JsonArray(
            ServingHost.User("What is this?", "https://example.com/cat.png"))));
        Assert.Equal("image_url_not_allowed", error["code"]!.GetValue<string>());
    }

    /// <summary>A PNG whose header declares <paramref name="width"/> × <paramref name="height"/> RGB pixels, with one tiny IDAT.</summary>
    internal static byte[] PngHeader(int width, int height)
    {
        var ms = new MemoryStream();
        ms.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
        Chunk(ms, "IHDR", ihdr);
        Chunk(ms, "IDAT", [0x78, 0x9C, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
        Chunk(ms, "IEND", []);
        return ms.ToArray();
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        Span<byte> len = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(len, data.Length);
        s.Write(len);
        var typed = Encoding.ASCII.GetBytes(type).Concat(data).ToArray();
        s.Write(typed);
        BinaryPrimitives.WriteUInt32BigEndian(len, Crc32(typed));
        s.Write(len);
    }

    private static uint Crc32(byte[] bytes)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in bytes)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
        }
        return ~crc;
    }
}
