using Microsoft.Extensions.Logging;

namespace MiniGpt4.Extensions.Hosting;

/// <summary>The add-on's log messages (source-generated: no formatting cost when the level is off).</summary>
internal static partial class HostingLog
{
    [LoggerMessage(1, LogLevel.Information, "Model {Name}: loading {Path} on {Device}, dtype {DType}, threads {Threads}, {Slots} concurrent requests, queue {Queue}")]
    public static partial void Loading(ILogger logger, string name, string path, string device, MiniGptDType dtype, string threads, int slots, int queue);

    [LoggerMessage(2, LogLevel.Information, "Model {Name}: {Stage} ({Fraction:P0}) {File}")]
    public static partial void LoadStage(ILogger logger, string name, string stage, double fraction, string? file);

    [LoggerMessage(3, LogLevel.Information, "Model {Name}: {ModelName} ({Variant}, {DType}) ready in {Seconds:0.0} s")]
    public static partial void Loaded(ILogger logger, string name, string modelName, string variant, MiniGptDType dtype, double seconds);

    [LoggerMessage(4, LogLevel.Error, "Model {Name}: loading {Path} failed: {Reason}")]
    public static partial void LoadFailed(ILogger logger, Exception exception, string name, string path, string reason);

    [LoggerMessage(5, LogLevel.Information, "Model {Name}: answered with {PromptTokens} prompt + {CompletionTokens} completion tokens ({CachedTokens} reused), finish {Finish}")]
    public static partial void Answered(ILogger logger, string name, long promptTokens, long completionTokens, long cachedTokens, string finish);

    [LoggerMessage(6, LogLevel.Warning, "Model {Name}: request refused ({Kind}): {Reason}")]
    public static partial void Refused(ILogger logger, string name, string kind, string reason);

    [LoggerMessage(7, LogLevel.Information, "Model {Name}: request cancelled by the client")]
    public static partial void Cancelled(ILogger logger, string name);

    [LoggerMessage(8, LogLevel.Information, "Draining: waiting for {Active} running and {Queued} queued requests of model {Name}")]
    public static partial void Draining(ILogger logger, string name, int active, int queued);
}
