using System.Net;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using MiniGpt4.Extensions.Hosting;
using MiniGpt4.Tests.Support;
using MiniGpt4.WebHost;
using Xunit;

namespace MiniGpt4.Tests.Serving;

/// <summary>Hosts with their own settings: a small queue, a wrong model path, bad options, two keyed models.</summary>
public class ServingLifecycleTests
{
    /// <summary>A request that runs long enough to hold its slot: 1900 tokens of the tiny model (the context holds 2000).</summary>
    private static JsonObject LongStream() => new()
    {
        ["messages"] = new JsonArray(ServingHost.User("Describe this image in detail.", ServingHost.DataUri("c_square_224x224.png"))),
        ["max_tokens"] = 1900, ["min_tokens"] = 1900, ["temperature"] = 0, ["stream"] = true,
    };

    private static JsonObject Short() => new()
    {
        ["messages"] = new JsonArray(ServingHost.User("Hi", ServingHost.DataUri("e_gray_50x40.png"))),
        ["max_tokens"] = 2, ["temperature"] = 0,
    };

    /// <summary>Reads events until the first one with content (the request is admitted and generating).</summary>
    private static async Task FirstContentAsync(IAsyncEnumerator<string> events)
    {
        while (await events.MoveNextAsync())
            if (JsonNode.Parse(events.Current)!["choices"]?[0]?["delta"]?["content"]?.GetValue<string>() is { Length: > 0 }) return;
        Assert.Fail("the stream ended before any content");
    }

    [SkippableFact]
    public async Task A_full_queue_is_429_with_Retry_After_and_a_client_that_disconnects_frees_its_slot()
    {
        await using var host = await ServingHost.StartAsync(configure: o => { o.MaxConcurrentRequests = 1; o.MaxQueuedRequests = 0; });
        var pipeline = host.Model.GetPipeline();
        var queuedBefore = pipeline.QueuedRequests;

        // The tiny model writes the long answer in a few hundred milliseconds, so on a loaded machine it can end before the
        // second request arrives; then that request is rightly admitted, and the scenario is tried again. A server that
        // did not enforce the limit would admit it every time, which the last attempt reports.
        const int attempts = 5;
        for (var attempt = 1; ; attempt++)
        {
            using var cts = new CancellationTokenSource();
            var stream = await host.PostAsync(LongStream(), HttpCompletionOption.ResponseHeadersRead, cts.Token);
            Assert.Equal(HttpStatusCode.OK, stream.StatusCode);
            var events = ServingHost.EventsAsync(stream, cts.Token).GetAsyncEnumerator(cts.Token);
            await FirstContentAsync(events);
            async Task DrainAsync()
            {
                while (await events.MoveNextAsync()) { }
                await events.DisposeAsync();
                stream.Dispose();
            }
            if (pipeline.ActiveRequests == 0 && attempt < attempts)
            {
                // The whole answer was written before its first event was read here: try again.
                await DrainAsync();
                continue;
            }
            Assert.Equal(1, pipeline.ActiveRequests);

            using (var second = await host.PostAsync(Short()))
            {
                if (second.StatusCode == HttpStatusCode.OK && attempt < attempts)
                {
                    // Admitted: the long answer must have finished first. Read it to its end and try again.
                    await DrainAsync();
                    continue;
                }
                Assert.Equal(HttpStatusCode.TooManyRequests, second.StatusCode);
                Assert.True(second.Headers.RetryAfter?.Delta > TimeSpan.Zero, "Retry-After is sent");
                Assert.Equal("rate_limit_exceeded", (await ServingHost.ErrorAsync(second))["code"]!.GetValue<string>());
            }

            // The client goes away mid-stream.
            await cts.CancelAsync();
            try { await events.DisposeAsync(); } catch (OperationCanceledException) { }
            stream.Dispose();
            break;
        }

        // The server sees the disconnect and cancels the answer: its slot comes back (polled: the library has no event for it).
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (pipeline.ActiveRequests > 0 && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.Equal(0, pipeline.ActiveRequests);
        Assert.Equal(queuedBefore, pipeline.QueuedRequests);
        using var after = await host.PostAsync(Short());
        Assert.Equal(HttpStatusCode.OK, after.StatusCode); // one slot, no queue: only a freed slot admits it
    }

    [SkippableFact]
    public async Task A_wrong_model_path_is_unhealthy_and_503_with_the_reason()
    {
        _ = ServingHost.Manifest;
        using var dir = new TempDir();
        var missing = Path.Combine(dir.Path, "no-such-model", "minigpt4.json");
        await using var host = await ServingHost.StartAsync(model: missing, waitForModel: false);
        await Assert.ThrowsAsync<MiniGptModelUnavailableException>(() => host.Model.WhenReadyAsync().WaitAsync(TimeSpan.FromMinutes(1)));
        Assert.Equal(MiniGptModelState.Failed, host.Model.State);

        using var health = await host.Http.GetAsync("health");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, health.StatusCode);
        var report = JsonNode.Parse(await health.Content.ReadAsStringAsync())!;
        Assert.Equal("Unhealthy", report["status"]!.GetValue<string>());
        Assert.Contains("no-such-model", report["checks"]![0]!["description"]!.GetValue<string>());

        using var response = await host.PostAsync(Short());
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        var error = await ServingHost.ErrorAsync(response);
        Assert.Equal("model_load_failed", error["code"]!.GetValue<string>());
        Assert.Contains("no-such-model", error["message"]!.GetValue<string>());
    }

    [SkippableFact]
    public async Task A_relative_model_path_is_taken_against_the_current_directory()
    {
        var manifest = ServingHost.Manifest;
        var relative = Path.GetRelativePath(Environment.CurrentDirectory, manifest);
        Assert.False(Path.IsPathRooted(relative));
        await using var host = await ServingHost.StartAsync(model: relative);
        Assert.Equal(Path.GetFullPath(manifest), host.Model.Options.ModelPath);
        using var response = await host.PostAsync(Short());
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [SkippableFact]
    public async Task Options_out_of_range_stop_the_host_at_start()
    {
        var app = WebHostApp.Build(["--urls", "http://127.0.0.1:0", "--model", ServingHost.Manifest], o => o.MaxConcurrentRequests = 0);
        var error = await Assert.ThrowsAsync<OptionsValidationException>(() => app.StartAsync());
        Assert.Contains("MiniGpt4:MaxConcurrentRequests", error.Message);
        await app.DisposeAsync();
    }

    [SkippableFact]
    public async Task Two_keyed_models_load_in_one_host_and_bind_from_configuration()
    {
        var builder = Host.CreateApplicationBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Models:vicuna:ModelPath"] = ServingHost.Manifest,
            ["Models:vicuna:DType"] = "float32",
            ["Models:llama2:ModelPath"] = Fixtures.Require("oracle/tiny/minigpt4-llama2.json"),
            ["Models:llama2:DType"] = "float32",
            ["Models:llama2:ModelId"] = "tiny-llama2",
        });
        builder.Services.AddKeyedMiniGpt4Model("vicuna", builder.Configuration.GetSection("Models:vicuna"));
        builder.Services.AddKeyedMiniGpt4Model("llama2", builder.Configuration.GetSection("Models:llama2"));
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var vicuna = host.Services.GetRequiredKeyedService<MiniGptModel>("vicuna");
            var llama = host.Services.GetRequiredKeyedService<MiniGptModel>("llama2");
            await Task.WhenAll(vicuna.WhenReadyAsync(), llama.WhenReadyAsync()).WaitAsync(TimeSpan.FromMinutes(2));
            Assert.Equal(ModelVariant.MiniGpt4Vicuna0, vicuna.GetPipeline().Variant);
            Assert.Equal(ModelVariant.MiniGpt4Llama2, llama.GetPipeline().Variant);
            Assert.Equal("tiny-llama2", llama.ModelId);
            Assert.Equal(MiniGptDType.Float32, llama.Options.DType);
            var health = await host.Services.GetRequiredService<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckService>().CheckHealthAsync();
            Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy, health.Status);
            Assert.Equal(["minigpt4:llama2", "minigpt4:vicuna"], health.Entries.Keys.Order());
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [Fact]
    public void The_README_hosting_snippet_binds_the_section_and_registers_the_model_and_its_health_check()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["MiniGpt4:ModelPath"] = "models/minigpt4.json", ["MiniGpt4:DType"] = "bfloat16", ["MiniGpt4:MaxConcurrentRequests"] = "3",
        }).Build();
        var services = new ServiceCollection().AddLogging();
        Docs.ReadmeSnippets.Hosting(services, configuration);
        using var provider = services.BuildServiceProvider();
        var model = provider.GetRequiredService<MiniGptModel>();
        Assert.Equal(MiniGptModelState.NotStarted, model.State);
        Assert.Equal(3, model.Options.MaxConcurrentRequests);
        Assert.Equal(Path.GetFullPath("models/minigpt4.json"), model.Options.ModelPath);
        Assert.Throws<MiniGptModelUnavailableException>(() => model.GetChatClient());
        Assert.NotNull(provider.GetService<Microsoft.Extensions.Diagnostics.HealthChecks.HealthCheckService>());
    }

    [Fact]
    public void Without_a_model_the_bundled_toy_model_is_used_or_the_message_says_where_it_was_looked_for()
    {
        var expected = Path.Combine(AppContext.BaseDirectory, WebHostApp.ToyModelFolder, "minigpt4.json");
        if (File.Exists(expected))
        {
            Assert.Equal(expected, WebHostApp.ToyModel());
            return;
        }
        var error = Assert.Throws<MiniGptConfigurationException>(() => WebHostApp.ToyModel());
        Assert.Contains(expected, error.Message);
        Assert.Contains("--model", error.Message);
    }
}
