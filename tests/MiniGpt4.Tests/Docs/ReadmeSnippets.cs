using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace MiniGpt4.Tests.Docs;

/// <summary>
/// The README's C# examples that have a <c>&lt;!-- snippet: name --&gt;</c> marker: each is the <c>#region name</c> below,
/// copied verbatim (ReadmeSnippetTests checks the copies and runs the examples on the tiny oracle models). Edit the
/// code here, then paste the region into README.md.
/// </summary>
public static class ReadmeSnippets
{
    public static async Task<IReadOnlyList<MiniGptGroundingBox>> Grounding(string manifestPath, string photoPath)
    {
        #region grounding
        using var pipeline = await MiniGptPipeline.LoadAsync(manifestPath);   // a MiniGPT-v2 model
        var answer = await pipeline.AskAsync(ImageInput.FromFile(photoPath), "[grounding] describe this image in detail");
        // e.g. "<p>a man</p> {<10><20><30><95>} riding <p>a bicycle</p> {<5><40><60><100>}"
        var boxes = answer.GetGroundingBoxes(imageWidth: 640, imageHeight: 480);   // the photo's size in pixels
        foreach (var box in boxes)
            Console.WriteLine($"{box.Phrase ?? "(bare box)"}: ({box.Left:0}, {box.Top:0}) to ({box.Right:0}, {box.Bottom:0})");
        #endregion
        return boxes;
    }

    public static async Task<(List<Activity> Spans, List<Metric> Metrics, MiniGptResponse Answer)> Telemetry(MiniGptPipeline pipeline, string photoPath)
    {
        var spans = new List<Activity>();
        var metrics = new List<Metric>();
        #region telemetry
        using var tracing = Sdk.CreateTracerProviderBuilder()
            .AddSource(MiniGptDiagnostics.SourceName)     // a "chat {model}" span per answer
            .AddInMemoryExporter(spans)                    // or .AddOtlpExporter()
            .Build();
        using var meters = Sdk.CreateMeterProviderBuilder()
            .AddMeter(MiniGptDiagnostics.SourceName)      // gen_ai.server.* and minigpt4.server.*
            .AddInMemoryExporter(metrics)
            .Build();

        var answer = await pipeline.AskAsync(ImageInput.FromFile(photoPath), "Describe this image in detail.");
        #endregion
        meters!.ForceFlush();
        return (spans, metrics, answer);
    }
}
