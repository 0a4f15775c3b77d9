using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Text.Json;
using MiniGpt4.Abstractions;

namespace MiniGpt4.Generation;

/// <summary>
/// The library's ActivitySource and Meter (<see cref="MiniGptDiagnostics.SourceName"/>) and their instruments, with the
/// OpenTelemetry gen_ai semantic conventions' names, units and bucket advice. Recording costs nothing measurable when
/// nobody listens: the span is not created and the instruments are disabled.
/// </summary>
internal static class Telemetry
{
    public const string ProviderName = "minigpt4";
    public const string OperationName = "chat";

    private static readonly string? Version = typeof(Telemetry).Assembly.GetName().Version?.ToString();

    public static readonly ActivitySource Source = new(MiniGptDiagnostics.SourceName, Version);
    public static readonly Meter Meter = new(MiniGptDiagnostics.SourceName, Version);

    public static readonly Histogram<double> RequestDuration = Meter.CreateHistogram("gen_ai.server.request.duration", "s",
        "Time from the start of an answer's prefill to its last token (after admission).",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92] });

    public static readonly Histogram<double> TimeToFirstToken = Meter.CreateHistogram("gen_ai.server.time_to_first_token", "s",
        "Time from the start of an answer's prefill to its first token, for successful answers.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0] });

    public static readonly Histogram<double> TimePerOutputToken = Meter.CreateHistogram("gen_ai.server.time_per_output_token", "s",
        "Time per output token after the first, for successful answers.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5] });

    public static readonly Histogram<long> TokenUsage = Meter.CreateHistogram<long>("gen_ai.server.token.usage", "{token}",
        "Tokens per answer by gen_ai.token.type: input (text and image positions of the prompt) and output.",
        advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864] });

    public static readonly Counter<long> ImageTokens = Meter.CreateCounter<long>("minigpt4.server.image_tokens", "{token}",
        "Prompt positions holding image embeddings (part of gen_ai.server.token.usage's input).");

    public static readonly UpDownCounter<int> QueueDepth = Meter.CreateUpDownCounter<int>("minigpt4.server.queue.depth", "{request}",
        "Requests waiting for admission (a slot and memory).");

    public static readonly UpDownCounter<int> ActiveRequests = Meter.CreateUpDownCounter<int>("minigpt4.server.active_requests", "{request}",
        "Requests admitted and not yet finished.");

    public static readonly Histogram<double> QueueWait = Meter.CreateHistogram("minigpt4.server.queue.wait_duration", "s",
        "Time a request waited for admission.",
        advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60] });

    /// <summary>The attributes every measurement of one model carries, plus <paramref name="name"/> = <paramref name="value"/> when given.</summary>
    public static TagList ModelTags(string model, string? name = null, object? value = null)
    {
        var tags = new TagList { { "gen_ai.operation.name", OperationName }, { "gen_ai.provider.name", ProviderName }, { "gen_ai.request.model", model } };
        if (name is not null) tags.Add(name, value);
        return tags;
    }

    /// <summary>Finish reasons as the conventions spell them.</summary>
    public static string Spell(MiniGptFinishReason reason) => reason switch
    {
        MiniGptFinishReason.Stop => "stop",
        MiniGptFinishReason.Length => "length",
        _ => "cancelled",
    };
}

/// <summary>The span and the measurements of one answer (engine level). Not thread-safe: one request's calls run one at a time.</summary>
internal sealed class RequestTelemetry
{
    private readonly Activity? _activity;
    private readonly string _model;
    private readonly long _start = Stopwatch.GetTimestamp();
    private readonly System.Text.StringBuilder? _answer;
    private readonly bool _beams;
    private long _firstToken;
    private string? _errorType;
    private bool _ended;

    public RequestTelemetry(string model, ILanguageModel languageModel, PromptSequence prompt, GenerationOptions options)
    {
        _model = model;
        _beams = options.NumBeams > 1;
        var activity = Telemetry.Source.StartActivity($"{Telemetry.OperationName} {model}", ActivityKind.Internal);
        _activity = activity;
        if (activity is null || !activity.IsAllDataRequested) return;
        activity.SetTag("gen_ai.operation.name", Telemetry.OperationName);
        activity.SetTag("gen_ai.provider.name", Telemetry.ProviderName);
        activity.SetTag("gen_ai.request.model", model);
        activity.SetTag("gen_ai.request.max_tokens", options.MaxNewTokens);
        if (!options.IsGreedy)
        {
            activity.SetTag("gen_ai.request.temperature", (double)options.Temperature);
            activity.SetTag("gen_ai.request.top_p", (double)options.TopP);
            activity.SetTag("gen_ai.request.top_k", (double)options.TopK);
        }
        else activity.SetTag("gen_ai.request.temperature", 0.0);
        if (options.Seed is { } seed) activity.SetTag("gen_ai.request.seed", seed);
        if (options.StopStrings.Count > 0) activity.SetTag("gen_ai.request.stop_sequences", options.StopStrings.ToArray());
        activity.SetTag("minigpt4.request.repetition_penalty", (double)options.RepetitionPenalty);
        activity.SetTag("minigpt4.request.num_beams", options.NumBeams);
        if (options.NumBeams > 1) activity.SetTag("minigpt4.request.length_penalty", (double)options.LengthPenalty);
        if (options.MinNewTokens > 0) activity.SetTag("minigpt4.request.min_tokens", options.MinNewTokens);
        if (MiniGptDiagnostics.EnableSensitiveData)
        {
            activity.SetTag("gen_ai.input.messages", InputMessages(languageModel, prompt));
            _answer = new();
        }
    }

    /// <summary>Prompt positions holding image embeddings, after a left truncation.</summary>
    public static int ImagePositions(PromptSequence prompt)
    {
        int offset = 0, images = 0;
        foreach (var part in prompt.Parts)
        {
            if (part is ImagePart) images += Math.Max(0, offset + part.Length - Math.Max(offset, prompt.SkipLeft));
            offset += part.Length;
        }
        return images;
    }

    /// <summary>An update is about to be handed to the caller.</summary>
    public void Update(GenerationUpdate update)
    {
        if (_firstToken == 0 && update.TokenIds.Count > 0) _firstToken = Stopwatch.GetTimestamp();
        _answer?.Append(update.Text);
    }

    /// <summary>The answer finished (the update carrying the finish reason and usage).</summary>
    public void Finished(GenerationUpdate last, int imagePositions)
    {
        if (_ended) return;
        _ended = true;
        var end = Stopwatch.GetTimestamp();
        var tags = Telemetry.ModelTags(_model, "gen_ai.response.model", _model);
        var usage = last.Usage!;
        var reason = Telemetry.Spell(last.FinishReason!.Value);
        Telemetry.RequestDuration.Record(Stopwatch.GetElapsedTime(_start, end).TotalSeconds, tags);
        if (_firstToken != 0)
        {
            Telemetry.TimeToFirstToken.Record(Stopwatch.GetElapsedTime(_start, _firstToken).TotalSeconds, tags);
            // Beam search hands over all its tokens at the end: there is no per-token time to report.
            if (usage.GeneratedTokens > 1 && !_beams)
                Telemetry.TimePerOutputToken.Record(Stopwatch.GetElapsedTime(_firstToken, end).TotalSeconds / (usage.GeneratedTokens - 1), tags);
        }
        Telemetry.TokenUsage.Record(usage.PromptTokens, Telemetry.ModelTags(_model, "gen_ai.token.type", "input"));
        Telemetry.TokenUsage.Record(usage.GeneratedTokens, Telemetry.ModelTags(_model, "gen_ai.token.type", "output"));
        if (imagePositions > 0) Telemetry.ImageTokens.Add(imagePositions, tags);

        var activity = _activity;
        if (activity is null) return;
        if (activity.IsAllDataRequested)
        {
            activity.SetTag("gen_ai.response.model", _model);
            activity.SetTag("gen_ai.response.finish_reasons", new[] { reason });
            activity.SetTag("gen_ai.usage.input_tokens", usage.PromptTokens);
            activity.SetTag("gen_ai.usage.output_tokens", usage.GeneratedTokens);
            activity.SetTag("gen_ai.usage.cache_read.input_tokens", usage.ReusedPromptTokens);
            activity.SetTag("minigpt4.usage.image_tokens", imagePositions);
            if (usage.TruncatedPromptTokens > 0) activity.SetTag("minigpt4.usage.truncated_input_tokens", usage.TruncatedPromptTokens);
            if (_answer is not null)
                activity.SetTag("gen_ai.output.messages", JsonSerializer.Serialize(new[]
                {
                    new Dictionary<string, object>
                    {
                        ["role"] = "assistant",
                        ["parts"] = new[] { new Dictionary<string, object> { ["type"] = "text", ["content"] = _answer.ToString() } },
                        ["finish_reason"] = reason,
                    },
                }));
        }
        activity.Dispose();
    }

    /// <summary>A call of the request threw.</summary>
    public void Failed(Exception error) => _errorType ??= error.GetType().FullName;

    /// <summary>The request ended without finishing: failed, cancelled, or abandoned by its caller.</summary>
    public void Ended()
    {
        if (_ended) return;
        _ended = true;
        var errorType = _errorType ?? "abandoned";
        Telemetry.RequestDuration.Record(Stopwatch.GetElapsedTime(_start).TotalSeconds, Telemetry.ModelTags(_model, "error.type", errorType));
        if (_activity is null) return;
        _activity.SetTag("error.type", errorType);
        _activity.SetStatus(ActivityStatusCode.Error, _errorType is null ? "The caller stopped reading before the answer finished." : errorType);
        _activity.Dispose();
    }

    private static string InputMessages(ILanguageModel model, PromptSequence prompt)
    {
        var parts = new List<Dictionary<string, object>>();
        foreach (var part in prompt.Parts)
        {
            if (part is TokenPart t) parts.Add(new() { ["type"] = "text", ["content"] = model.Detokenize(t.Ids, skipSpecialTokens: false) });
            else parts.Add(new() { ["type"] = "image", ["tokens"] = part.Length });
        }
        return JsonSerializer.Serialize(new[] { new Dictionary<string, object> { ["role"] = "user", ["parts"] = parts } });
    }
}
