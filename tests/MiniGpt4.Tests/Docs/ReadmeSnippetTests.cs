using Microsoft.Extensions.DependencyInjection;
using System.Diagnostics;
using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;
using MiniGpt4.Tests.Pipeline;
using MiniGpt4.Tests.Support;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Xunit;

namespace MiniGpt4.Tests.Docs;

/// <summary>
/// README.md's marked examples are the compiled regions of <see cref="ReadmeSnippets"/> (compared line by line), and they
/// run on the tiny oracle models. The library's spans and metrics under Microsoft.Extensions.AI's UseOpenTelemetry: one
/// trace, M.E.AI's CLIENT span the parent of ours, and no metric name in common (nothing is counted twice).
/// </summary>
public sealed class ReadmeSnippetTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    private static string RepoFile(string relative) => Path.Combine(Fixtures.RepoRoot, relative);

    /// <summary>The fenced block after each <c>&lt;!-- snippet: name --&gt;</c> line of a markdown file.</summary>
    private static Dictionary<string, string> MarkedBlocks(string markdown)
    {
        var blocks = new Dictionary<string, string>();
        foreach (Match m in Regex.Matches(markdown.ReplaceLineEndings("\n"), @"<!-- snippet: (?<name>[\w-]+) -->\n```csharp\n(?<code>.*?)\n```", RegexOptions.Singleline))
            blocks.Add(m.Groups["name"].Value, m.Groups["code"].Value);
        return blocks;
    }

    /// <summary>The <c>#region name</c> blocks of a C# file, dedented.</summary>
    private static Dictionary<string, string> Regions(string code)
    {
        var regions = new Dictionary<string, string>();
        foreach (Match m in Regex.Matches(code.ReplaceLineEndings("\n"), @"^[ \t]*#region (?<name>[\w-]+)\n(?<body>.*?)\n[ \t]*#endregion", RegexOptions.Singleline | RegexOptions.Multiline))
        {
            var lines = m.Groups["body"].Value.Split('\n');
            var indent = lines.Where(l => l.Trim().Length > 0).Min(l => l.Length - l.TrimStart().Length);
            regions.Add(m.Groups["name"].Value, string.Join("\n", lines.Select(l => l.Length >= indent ? l[indent..].TrimEnd() : l.Trim())));
        }
        return regions;
    }

    [SkippableFact]
    public void Every_marked_README_example_is_a_compiled_region_verbatim()
    {
        var blocks = MarkedBlocks(File.ReadAllText(RepoFile("README.md")));
        var regions = Regions(File.ReadAllText(RepoFile("tests/MiniGpt4.Tests/Docs/ReadmeSnippets.cs")));
        Assert.Contains("grounding", blocks.Keys);
        Assert.Contains("telemetry", blocks.Keys);
        Assert.Equal(regions.Keys.Order(), blocks.Keys.Order());
        var source = File.ReadAllText(RepoFile("tests/MiniGpt4.Tests/Docs/ReadmeSnippets.cs")).ReplaceLineEndings("\n");
        foreach (var (name, block) in blocks)
        {
            var lines = block.Split('\n').Select(l => l.TrimEnd()).ToArray();
            var imports = lines.TakeWhile(l => Regex.IsMatch(l, @"^using [\w.]+;$")).ToArray();
            foreach (var import in imports) Assert.Contains(import + "\n", source);
            var code = string.Join("\n", lines.Skip(imports.Length)).Trim('\n');
            Assert.True(regions[name] == code,
                $"README.md's '{name}' example differs from #region {name} in tests/MiniGpt4.Tests/Docs/ReadmeSnippets.cs:\n{regions[name]}");
        }
    }

    [SkippableFact]
    public async Task The_grounding_example_runs_and_the_random_weight_model_draws_no_box()
    {
        var boxes = await ReadmeSnippets.Grounding(Fixtures.Require("oracle/tiny/minigptv2/minigptv2.json"), Oracle.Image("a_gradient_shapes_640x480.png"));
        Assert.Empty(boxes);
    }

    [SkippableFact]
    public async Task The_telemetry_example_collects_the_span_and_the_metrics()
    {
        var (spans, metrics, answer) = await ReadmeSnippets.Telemetry(tiny.Get("vicuna0"), Oracle.Image("a_gradient_shapes_640x480.png"));
        Assert.Contains(spans, s => s.DisplayName == "chat minigpt4-vicuna0" && s.Kind == ActivityKind.Internal
                                    && Equals(s.GetTagItem("gen_ai.usage.output_tokens"), answer.Usage.GeneratedTokens));
        var names = metrics.Select(m => m.Name).ToHashSet();
        foreach (var name in new[] { "gen_ai.server.request.duration", "gen_ai.server.time_to_first_token", "gen_ai.server.token.usage", "minigpt4.server.image_tokens", "minigpt4.server.active_requests" })
            Assert.Contains(name, names);
    }

    /// <summary>An application's own minimal IChatClient over the pipeline (the library's is in MiniGpt4.Extensions.AI): enough to host M.E.AI's middleware.</summary>
    private sealed class AskClient(MiniGptPipeline pipeline) : IChatClient
    {
        public async Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        {
            var r = await pipeline.AskAsync(OracleChat.ImageA, messages.Last().Text, GenerationOptions.Greedy with { MaxNewTokens = 5 }, cancellationToken);
            return new ChatResponse(new ChatMessage(ChatRole.Assistant, r.Text))
            {
                ModelId = "minigpt4-vicuna0",
                FinishReason = ChatFinishReason.Length,
                Usage = new UsageDetails { InputTokenCount = r.Usage.PromptTokens, OutputTokenCount = r.Usage.GeneratedTokens },
            };
        }

        public IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
            => throw new NotSupportedException();

        public object? GetService(Type serviceType, object? serviceKey = null)
            => serviceType == typeof(ChatClientMetadata) ? new ChatClientMetadata("minigpt4", null, "minigpt4-vicuna0") : null;

        public void Dispose() { }
    }

    [SkippableFact]
    public async Task Under_UseOpenTelemetry_the_engine_span_is_a_child_and_no_metric_is_counted_twice()
    {
        var app = "MiniGpt4.Tests.App." + Guid.NewGuid().ToString("N")[..8];
        var spans = new List<Activity>();
        var metrics = new List<Metric>();
        using (var tracing = Sdk.CreateTracerProviderBuilder().AddSource(app).AddSource(MiniGptDiagnostics.SourceName).AddInMemoryExporter(spans).Build())
        using (var meters = Sdk.CreateMeterProviderBuilder().AddMeter(app).AddMeter(MiniGptDiagnostics.SourceName).AddInMemoryExporter(metrics).Build())
        {
            using var client = new ChatClientBuilder(new AskClient(tiny.Get("vicuna0"))).UseOpenTelemetry(sourceName: app).Build();
            var response = await client.GetResponseAsync(OracleChat.Question);
            Assert.Equal(5, response.Usage!.OutputTokenCount);
            meters.ForceFlush();
        }

        var outer = Assert.Single(spans, s => s.Source.Name == app);
        Assert.Equal(ActivityKind.Client, outer.Kind);
        Assert.Equal("chat", outer.GetTagItem("gen_ai.operation.name"));
        var inner = Assert.Single(spans, s => s.Source.Name == MiniGptDiagnostics.SourceName && s.TraceId == outer.TraceId);
        Assert.Equal(ActivityKind.Internal, inner.Kind);
        Assert.Equal(outer.SpanId, inner.ParentSpanId);
        // Both describe the same tokens at their own layer (the client's from the IChatClient's reported usage).
        Assert.Equal(outer.GetTagItem("gen_ai.usage.output_tokens"), inner.GetTagItem("gen_ai.usage.output_tokens"));

        var clientMetrics = metrics.Where(m => m.MeterName == app).Select(m => m.Name).ToHashSet();
        var serverMetrics = metrics.Where(m => m.MeterName == MiniGptDiagnostics.SourceName).Select(m => m.Name).ToHashSet();
        Assert.Contains("gen_ai.client.operation.duration", clientMetrics);
        Assert.Contains("gen_ai.client.token.usage", clientMetrics);
        Assert.Contains("gen_ai.server.request.duration", serverMetrics);
        Assert.Contains("gen_ai.server.token.usage", serverMetrics);
        Assert.Empty(clientMetrics.Intersect(serverMetrics));
    }

    [SkippableFact]
    public async Task The_IChatClient_snippet_runs()
        => await ReadmeSnippets.IChatClientAsync(tiny.Get("vicuna0"), Oracle.Image("a_gradient_shapes_640x480.png"));

    [SkippableFact]
    public async Task The_replay_and_save_snippet_runs()
    {
        using var dir = new TempDir();
        await ReadmeSnippets.ReplayAndSaveAsync(tiny.Get("vicuna0"), Oracle.Image("a_gradient_shapes_640x480.png"), dir.File("chat.session"));
        Assert.True(new FileInfo(dir.File("chat.session")).Length > 0);
    }

    [Fact]
    public void The_dependency_injection_snippet_registers_a_chat_client()
    {
        var services = new ServiceCollection();
        ReadmeSnippets.AddChatClient(services);
        Assert.Contains(services, d => d.ServiceType == typeof(IChatClient));
        Assert.Contains(services, d => d.ServiceType == typeof(MiniGptPipeline));
    }
}
