using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt4.Cli.Options;
using MiniGpt4.Cli.Output;

namespace MiniGpt4.Cli.Commands;

/// <summary>
/// <c>batch</c>: answers a JSONL file of requests with one model load. Each line is
/// <c>{"id": "...", "image": path, "prompt": "...", "options": {...}}</c> (image and options optional; other keys ignored; a relative
/// image path is relative to the input file's folder); each answer line is <c>{"id", "text", "prompt_tokens",
/// "generated_tokens", "finish_reason"}</c>, or <c>{"id", "line", "error"}</c> for a request that could not be answered, in input
/// order. Up to <c>--concurrency</c> requests are in flight at once; the engine interleaves their steps.
/// </summary>
internal sealed class BatchCommand : ModelCommand
{
    private readonly Option<string?> _input = CliOption.Text("--input",
        "Requests, one JSON object a line: {\"id\": \"...\", \"image\": path, \"prompt\": \"...\", \"options\": {\"temperature\": 0, ...}}", "FILE", required: true);
    private readonly Option<string?> _output = CliOption.Text("--output",
        "Answers, one a line in input order: {\"id\", \"text\", \"prompt_tokens\", \"generated_tokens\", \"finish_reason\"} or {\"id\", \"line\", \"error\"}",
        "FILE", required: true);
    private readonly Option<int?> _concurrency = CliOption.Int("--concurrency",
        $"Requests in flight at once [default: {new MiniGptLoadOptions().MaxConcurrentRequests}]");
    private readonly GenerationOptionSet _generation = new();
    private readonly LoadOptionSet _load = new();

    public BatchCommand() : base("batch",
        "Answer a JSONL file of requests (id, image, prompt, optional per-line options) with one model load, several in flight; " +
        "one answer line per request, in input order. A bad line gets an \"error\" on its answer line and the batch goes on. " +
        "The generation options apply to every line; a line's \"options\" override them (same names, _ for -).")
    {
        Options.Add(_input);
        Options.Add(_output);
        Options.Add(_concurrency);
        CliOption.Range(_concurrency, 1, 1024);
        _generation.AddTo(this);
        _load.AddTo(this);
        _input.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string?>() is { } f && !File.Exists(f)) r.AddError($"invalid value for --input: '{f}' does not exist");
        });
    }

    protected override async Task<int> RunAsync(ParseResult r, string model, CancellationToken ct)
    {
        var input = r.GetValue(_input)!;
        var options = _generation.Read(r);
        var load = _load.Read(r);
        var concurrency = r.GetValue(_concurrency) ?? load.MaxConcurrentRequests;
        load = load with { MaxConcurrentRequests = concurrency, MaxQueuedRequests = Math.Max(load.MaxQueuedRequests, concurrency) };
        var folder = Path.GetDirectoryName(Path.GetFullPath(input))!;

        using var pipeline = await MiniGptPipeline.LoadAsync(model, load, ProgressPrinter.Create(), ct);
        var sw = Stopwatch.StartNew();
        int answered = 0, failed = 0;
        using var reader = new StreamReader(input);
        await using var writer = new StreamWriter(r.GetValue(_output)!) { AutoFlush = true };
        using var slots = new SemaphoreSlim(concurrency);
        // Requests in input order; the head is written as soon as it ends, so the file grows as answers come in.
        var pending = new Queue<Task<JsonObject>>();
        async Task WriteHeadAsync()
        {
            var answer = await pending.Dequeue();
            if (answer.ContainsKey("error")) failed++;
            else answered++;
            await writer.WriteLineAsync(Json.Serialize(answer));
        }

        var number = 0;
        while (await reader.ReadLineAsync(ct) is { } line)
        {
            number++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            await slots.WaitAsync(ct);
            pending.Enqueue(AnswerAsync(pipeline, line, number, options, folder, slots, ct));
            // Answers that ended behind an unfinished head wait in memory: at most a few per slot.
            while (pending.Count > 0 && (pending.Peek().IsCompleted || pending.Count > 4 * concurrency)) await WriteHeadAsync();
        }
        while (pending.Count > 0) await WriteHeadAsync();
        Console.Error.WriteLine($"[batch] {answered + failed} requests, {failed} errors, {sw.Elapsed.TotalSeconds:F1} s");
        return ExitCodes.Ok;
    }

    /// <summary>One line's answer object, or its error object; cancellation propagates.</summary>
    private async Task<JsonObject> AnswerAsync(MiniGptPipeline pipeline, string line, int number, GenerationOptions baseOptions, string folder,
        SemaphoreSlim slot, CancellationToken ct)
    {
        JsonNode? id = null;
        try
        {
            await Task.Yield(); // the reader goes on to the next line while this one runs
            var request = JsonNode.Parse(line) as JsonObject ?? throw new FormatException("a request is a JSON object");
            id = request["id"]?.DeepClone();
            if (id is not JsonValue v || v.GetValueKind() != JsonValueKind.String) throw new FormatException("\"id\" must be a string");
            var prompt = String(request, "prompt") ?? throw new FormatException("\"prompt\" is missing");
            var image = String(request, "image");
            var options = request["options"] switch
            {
                null => baseOptions,
                JsonObject o => _generation.Read(baseOptions, o),
                _ => throw new FormatException("\"options\" must be an object"),
            };
            using var session = pipeline.CreateSession();
            if (image is not null) await session.AddImageAsync(ImageInput.FromFile(Path.Combine(folder, image)), ct);
            var answer = await session.AskAsync(prompt, options, ct);
            return new JsonObject
            {
                ["id"] = id,
                ["text"] = answer.Text,
                ["prompt_tokens"] = answer.Usage.PromptTokens,
                ["generated_tokens"] = answer.Usage.GeneratedTokens,
                ["finish_reason"] = answer.FinishReason.ToString().ToLowerInvariant(),
            };
        }
        catch (Exception ex) when (ex is MiniGptException or JsonException or FormatException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            return new JsonObject { ["id"] = id?.DeepClone(), ["line"] = number, ["error"] = ex.Message };
        }
        finally
        {
            slot.Release();
        }
    }

    private static string? String(JsonObject request, string key) => request[key] switch
    {
        null => null,
        JsonValue v when v.GetValueKind() == JsonValueKind.String => v.GetValue<string>(),
        _ => throw new FormatException($"\"{key}\" must be a string"),
    };
}
