using MiniGpt4.Tests.Support;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text.Json.Nodes;
using MiniGpt4.Abstractions;
using MiniGpt4.Generation;
using Xunit;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>
/// The engine's span and metrics (ActivitySource and Meter "MiniGpt4") seen through ActivityListener and MeterListener,
/// as an OpenTelemetry SDK would see them. Each test gives its engine a unique model name and keeps only what carries
/// it, so that other tests running at the same time do not disturb the counts.
/// </summary>
public sealed class TelemetryTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    private sealed record Measurement(string Instrument, double Value, Dictionary<string, object?> Tags);

    /// <summary>Listens to everything named MiniGpt4 (and to the test's parent source), keeping what belongs to <see cref="Model"/>.</summary>
    private sealed class Capture : IDisposable
    {
        public const string ParentSource = "MiniGpt4.Tests.Parent";
        private readonly ActivityListener _activities;
        private readonly MeterListener _meters = new();

        public string Model { get; } = "test-" + Guid.NewGuid().ToString("N")[..8];
        public ConcurrentQueue<Activity> Spans { get; } = new();
        public ConcurrentQueue<Measurement> Measurements { get; } = new();

        public Capture()
        {
            _activities = new ActivityListener
            {
                ShouldListenTo = s => s.Name is MiniGptDiagnostics.SourceName or ParentSource,
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = a =>
                {
                    if (a.Source.Name == MiniGptDiagnostics.SourceName && Equals(a.GetTagItem("gen_ai.request.model"), Model)) Spans.Enqueue(a);
                },
            };
            ActivitySource.AddActivityListener(_activities);
            _meters.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == MiniGptDiagnostics.SourceName) listener.EnableMeasurementEvents(instrument);
            };
            _meters.SetMeasurementEventCallback<double>((i, v, t, _) => Record(i, v, t));
            _meters.SetMeasurementEventCallback<long>((i, v, t, _) => Record(i, v, t));
            _meters.SetMeasurementEventCallback<int>((i, v, t, _) => Record(i, v, t));
            _meters.Start();
        }

        private void Record(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            var dict = new Dictionary<string, object?>();
            foreach (var (k, v) in tags) dict[k] = v;
            if (Equals(dict.GetValueOrDefault("gen_ai.request.model"), Model)) Measurements.Enqueue(new(instrument.Name, value, dict));
        }

        public Measurement[] Of(string instrument) => Measurements.Where(m => m.Instrument == instrument).ToArray();

        public void Dispose()
        {
            _activities.Dispose();
            _meters.Dispose();
        }
    }

    private MiniGptPipeline Pipeline(Capture capture)
    {
        var loaded = tiny.Get("vicuna0");
        var p = new MiniGptPipeline(ModelVariant.MiniGpt4Vicuna0, loaded.VisionEncoder, loaded.Projector, new DelegatingLanguageModel(loaded.LanguageModel), ownsComponents: false);
        p.Engine.ModelName = capture.Model;
        return p;
    }

    [SkippableFact]
    public async Task An_answer_is_one_internal_chat_span_with_the_gen_ai_attributes_and_the_server_metrics()
    {
        using var capture = new Capture();
        using var p = Pipeline(capture);
        using var parentSource = new ActivitySource(Capture.ParentSource);
        var options = GenerationOptions.Greedy with { MaxNewTokens = 6, UseTemplateStops = false, StopStrings = ["never-in-gibberish"] };
        MiniGptResponse r;
        ActivityContext parent;
        using (var outer = parentSource.StartActivity("chat outer (an IChatClient's span)"))
        {
            parent = outer!.Context;
            r = await p.AskAsync(OracleChat.ImageA, OracleChat.Question, options);
        }

        var span = Assert.Single(capture.Spans);
        Assert.Equal($"chat {capture.Model}", span.DisplayName);
        Assert.Equal(ActivityKind.Internal, span.Kind);
        Assert.Equal(parent.SpanId, span.ParentSpanId);   // nests under whatever span is current (e.g. M.E.AI's UseOpenTelemetry)
        Assert.Equal(parent.TraceId, span.TraceId);
        Assert.Equal(ActivityStatusCode.Unset, span.Status);
        Assert.Equal("chat", span.GetTagItem("gen_ai.operation.name"));
        Assert.Equal("minigpt4", span.GetTagItem("gen_ai.provider.name"));
        Assert.Equal(6, span.GetTagItem("gen_ai.request.max_tokens"));
        Assert.Equal(0.0, span.GetTagItem("gen_ai.request.temperature"));
        Assert.Equal(1.0, span.GetTagItem("minigpt4.request.repetition_penalty"));
        Assert.Equal(new[] { "never-in-gibberish" }, span.GetTagItem("gen_ai.request.stop_sequences"));
        Assert.Equal(r.Usage.PromptTokens, span.GetTagItem("gen_ai.usage.input_tokens"));
        Assert.Equal(r.Usage.GeneratedTokens, span.GetTagItem("gen_ai.usage.output_tokens"));
        Assert.Equal(r.Usage.ReusedPromptTokens, span.GetTagItem("gen_ai.usage.cache_read.input_tokens"));
        Assert.Equal(32, span.GetTagItem("minigpt4.usage.image_tokens"));   // MiniGPT-4's 32 query tokens per image
        Assert.Equal(new[] { r.FinishReason == MiniGptFinishReason.Length ? "length" : "stop" }, span.GetTagItem("gen_ai.response.finish_reasons"));
        Assert.Equal(6, r.Usage.GeneratedTokens);
        // No text unless opted in.
        Assert.Null(span.GetTagItem("gen_ai.input.messages"));
        Assert.Null(span.GetTagItem("gen_ai.output.messages"));
        Assert.DoesNotContain(span.TagObjects, t => t.Value is string s && (s.Contains(OracleChat.Question) || (r.Text.Length > 0 && s.Contains(r.Text))));

        var duration = Assert.Single(capture.Of("gen_ai.server.request.duration"));
        Assert.True(duration.Value > 0);
        Assert.False(duration.Tags.ContainsKey("error.type"));
        var ttft = Assert.Single(capture.Of("gen_ai.server.time_to_first_token"));
        Assert.InRange(ttft.Value, 0, duration.Value);
        var tpot = Assert.Single(capture.Of("gen_ai.server.time_per_output_token"));
        Assert.InRange(tpot.Value, 0, duration.Value);
        var usage = capture.Of("gen_ai.server.token.usage");
        Assert.Equal(r.Usage.PromptTokens, Assert.Single(usage, m => Equals(m.Tags["gen_ai.token.type"], "input")).Value);
        Assert.Equal(6, Assert.Single(usage, m => Equals(m.Tags["gen_ai.token.type"], "output")).Value);
        Assert.Equal(32, Assert.Single(capture.Of("minigpt4.server.image_tokens")).Value);
        Assert.All(capture.Measurements, m => Assert.Equal("chat", m.Tags["gen_ai.operation.name"]));
    }

    [SkippableFact]
    public async Task Beam_search_reports_its_beams_and_no_time_per_token()
    {
        using var capture = new Capture();
        using var p = Pipeline(capture);
        var r = await p.AskAsync(OracleChat.ImageA, OracleChat.Question, GenerationOptions.Greedy with { NumBeams = 2, MaxNewTokens = 4 });
        var span = Assert.Single(capture.Spans);
        Assert.Equal(2, span.GetTagItem("minigpt4.request.num_beams"));
        Assert.Equal(r.Usage.GeneratedTokens, span.GetTagItem("gen_ai.usage.output_tokens"));
        Assert.Single(capture.Of("gen_ai.server.time_to_first_token"));
        Assert.Empty(capture.Of("gen_ai.server.time_per_output_token"));
    }

    [SkippableFact]
    public async Task Prompt_and_answer_text_are_recorded_only_when_opted_in()
    {
        using var capture = new Capture();
        using var p = Pipeline(capture);
        var before = MiniGptDiagnostics.EnableSensitiveData;
        MiniGptDiagnostics.EnableSensitiveData = true;
        MiniGptResponse r;
        try
        {
            r = await p.AskAsync(OracleChat.ImageA, OracleChat.Question, GenerationOptions.Greedy with { MaxNewTokens = 4 });
        }
        finally
        {
            MiniGptDiagnostics.EnableSensitiveData = before;
        }
        var span = Assert.Single(capture.Spans);
        var input = JsonNode.Parse((string)span.GetTagItem("gen_ai.input.messages")!)!.AsArray();
        var parts = input[0]!["parts"]!.AsArray();
        Assert.Equal("user", input[0]!["role"]!.GetValue<string>());
        Assert.Contains(parts, part => part!["type"]!.GetValue<string>() == "image" && part["tokens"]!.GetValue<int>() == 32);
        Assert.Contains(parts, part => part!["type"]!.GetValue<string>() == "text" && part["content"]!.GetValue<string>().Contains(OracleChat.Question));
        var output = JsonNode.Parse((string)span.GetTagItem("gen_ai.output.messages")!)!.AsArray();
        Assert.Equal(r.RawText, output[0]!["parts"]![0]!["content"]!.GetValue<string>());
    }

    [SkippableFact]
    public async Task A_cancelled_answer_ends_its_span_with_an_error_type()
    {
        using var capture = new Capture();
        using var p = Pipeline(capture);
        using var session = p.CreateSession();
        await session.AddImageAsync(OracleChat.ImageA);
        using var cts = new CancellationTokenSource();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in session.StreamAsync(OracleChat.Question, GenerationOptions.Greedy with { MaxNewTokens = 50, UseTemplateStops = false }, cts.Token))
                cts.Cancel();
        });
        var span = Assert.Single(capture.Spans);
        Assert.Equal(ActivityStatusCode.Error, span.Status);
        Assert.EndsWith("CanceledException", Assert.IsType<string>(span.GetTagItem("error.type")));
        Assert.Null(span.GetTagItem("gen_ai.response.finish_reasons"));
        var duration = Assert.Single(capture.Of("gen_ai.server.request.duration"));
        Assert.Equal(span.GetTagItem("error.type"), duration.Tags["error.type"]);
        Assert.Empty(capture.Of("gen_ai.server.time_to_first_token"));   // successful answers only
        Assert.Empty(capture.Of("gen_ai.server.token.usage"));
    }

    [Fact]
    public async Task Admission_reports_queue_depth_active_requests_and_waits()
    {
        using var capture = new Capture();
        var admission = new RequestAdmission(new AdmissionLimits(MaxConcurrentRequests: 1, MaxQueuedRequests: 4, MemoryBudgetBytes: 1 << 30), capture.Model);
        var first = await admission.AdmitAsync(1, "first", CancellationToken.None);
        var second = admission.AdmitAsync(1, "second", CancellationToken.None);
        using var cts = new CancellationTokenSource();
        var third = admission.AdmitAsync(1, "third", cts.Token);
        Assert.Equal(2, capture.Of("minigpt4.server.queue.depth").Sum(m => m.Value));
        cts.Cancel();                                   // abandoned while waiting
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => third);
        Assert.Equal(1, capture.Of("minigpt4.server.queue.depth").Sum(m => m.Value));
        Assert.Equal(1, capture.Of("minigpt4.server.active_requests").Sum(m => m.Value));
        first.Dispose();                                // the second is granted
        (await second).Dispose();
        Assert.Equal(0, capture.Of("minigpt4.server.queue.depth").Sum(m => m.Value));
        Assert.Equal(0, capture.Of("minigpt4.server.active_requests").Sum(m => m.Value));
        Assert.Equal(2, capture.Of("minigpt4.server.queue.wait_duration").Length);   // the two that were admitted
        admission.Close();
    }
}
