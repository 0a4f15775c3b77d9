// What a new user writes: MiniGpt4 and MiniGpt4.Extensions.AI from their packages, a question about an image through
// IChatClient under Microsoft.Extensions.AI's UseOpenTelemetry, spans and metrics collected in memory with the
// OpenTelemetry SDK. Prints one JSON object (answers, usage, spans, metric names) for the acceptance test to check.
// Usage: PackageConsumer MANIFEST IMAGE_A IMAGE_B
using System.Diagnostics;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.AI;
using MiniGpt4;
using MiniGpt4.Extensions.AI;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

if (args.Length != 3)
{
    Console.Error.WriteLine("usage: PackageConsumer MANIFEST IMAGE_A IMAGE_B");
    return 2;
}
const string App = "PackageConsumer";
var spans = new List<Activity>();
var metrics = new List<Metric>();
var tracing = Sdk.CreateTracerProviderBuilder().AddSource(App).AddSource(MiniGptDiagnostics.SourceName).AddInMemoryExporter(spans).Build();
var meters = Sdk.CreateMeterProviderBuilder().AddMeter(App).AddMeter(MiniGptDiagnostics.SourceName).AddInMemoryExporter(metrics).Build();

// One request at a time, so that the second question waits for the first (the queue metrics).
using var pipeline = await MiniGptPipeline.LoadAsync(args[0], new MiniGptLoadOptions { MaxConcurrentRequests = 1 });
var client = pipeline.AsIChatClient().AsBuilder().UseOpenTelemetry(sourceName: App).Build();
var options = new ChatOptions { Temperature = 0, MaxOutputTokens = 12 };

// The same question about image A (streamed) and image B: B is asked while A's stream is open, so it queues.
var streamA = client.GetStreamingResponseAsync(Question(args[1]), options).GetAsyncEnumerator();
var updatesA = new List<ChatResponseUpdate>();
if (!await streamA.MoveNextAsync()) throw new InvalidOperationException("no update");
updatesA.Add(streamA.Current);
var taskB = client.GetResponseAsync(Question(args[2]), options);
while (pipeline.QueuedRequests == 0 && !taskB.IsCompleted) await Task.Delay(5);
var queued = pipeline.QueuedRequests;
while (await streamA.MoveNextAsync()) updatesA.Add(streamA.Current);
await streamA.DisposeAsync();
var answerA = updatesA.ToChatResponse();
var answerB = await taskB;
client.Dispose();

tracing.ForceFlush();
meters.ForceFlush();
var report = new JsonObject
{
    ["minigpt4_version"] = Version(typeof(MiniGptPipeline).Assembly),
    ["extensions_ai_version"] = Version(typeof(MiniGptChatClientOptions).Assembly),
    ["queued_while_streaming"] = queued,
    ["answers"] = new JsonArray(Answer(args[1], answerA), Answer(args[2], answerB)),
    ["spans"] = new JsonArray([.. spans.Select(Span)]),
    ["metrics"] = new JsonArray([.. metrics.Select(m => (JsonNode)new JsonObject { ["meter"] = m.MeterName, ["name"] = m.Name })]),
};
tracing.Dispose();
meters.Dispose();
Console.WriteLine(report.ToJsonString());
return 0;

static List<ChatMessage> Question(string image) =>
[
    new(ChatRole.User, [new DataContent(File.ReadAllBytes(image), image.EndsWith(".png", StringComparison.OrdinalIgnoreCase) ? "image/png" : "image/jpeg"),
                        new TextContent("What is in the picture?")]),
];

static string? Version(Assembly assembly) => assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;

static JsonNode Answer(string image, ChatResponse r) => new JsonObject
{
    ["image"] = Path.GetFileName(image),
    ["text"] = r.Text,
    ["finish_reason"] = r.FinishReason?.Value,
    ["input_tokens"] = r.Usage?.InputTokenCount,
    ["output_tokens"] = r.Usage?.OutputTokenCount,
    ["image_tokens"] = r.Usage?.AdditionalCounts?.GetValueOrDefault("InputImageTokenCount"),
};

static JsonNode Span(Activity s) => new JsonObject
{
    ["source"] = s.Source.Name,
    ["name"] = s.DisplayName,
    ["kind"] = s.Kind.ToString(),
    ["trace_id"] = s.TraceId.ToString(),
    ["span_id"] = s.SpanId.ToString(),
    ["parent_span_id"] = s.ParentSpanId.ToString(),
    ["tags"] = new JsonObject([.. s.TagObjects.Select(t => KeyValuePair.Create(t.Key, (JsonNode?)JsonValue.Create(
        t.Value is System.Collections.IEnumerable e and not string ? string.Join(",", e.Cast<object>()) : Convert.ToString(t.Value, System.Globalization.CultureInfo.InvariantCulture))))]),
};
