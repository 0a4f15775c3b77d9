using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;
using MiniGpt4.Extensions.AI;

namespace MiniGpt4.Extensions.Hosting;

/// <summary>Where a hosted model is in its life.</summary>
public enum MiniGptModelState
{
    /// <summary>Registered; the host has not started loading it yet.</summary>
    NotStarted,
    /// <summary>Loading in the background.</summary>
    Loading,
    /// <summary>Loaded: <see cref="MiniGptModel.Pipeline"/> and <see cref="MiniGptModel.ChatClient"/> answer.</summary>
    Ready,
    /// <summary>The load failed; <see cref="MiniGptModel.FailureReason"/> says why. Nothing retries it.</summary>
    Failed,
}

/// <summary>
/// One model registered in a host (resolve it, keyed by its name, or unkeyed for the default one). The host's
/// <see cref="Microsoft.Extensions.Hosting.IHostedService"/> loads it in the background when the host starts: no request
/// waits on a load; a request that comes early gets <see cref="MiniGptModelUnavailableException"/> at once.
/// </summary>
public sealed class MiniGptModel : IDisposable
{
    private readonly object _lock = new();
    private readonly TaskCompletionSource _loaded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ILogger _logger;
    private MiniGptPipeline? _pipeline;
    private IChatClient? _chatClient;
    private string? _failure;
    private MiniGptModelState _state;
    private double _progress;

    internal MiniGptModel(string name, MiniGptModelOptions options, ILogger logger)
    {
        Name = name;
        Options = options;
        _logger = logger;
    }

    /// <summary>The registration's name (the service key).</summary>
    public string Name { get; }

    /// <summary>The settings it was registered with.</summary>
    public MiniGptModelOptions Options { get; }

    /// <summary>Now: not started, loading, ready or failed.</summary>
    public MiniGptModelState State { get { lock (_lock) return _state; } }

    /// <summary>Load progress in [0, 1].</summary>
    public double LoadProgress { get { lock (_lock) return _progress; } }

    /// <summary>Why the load failed (null unless <see cref="State"/> is <see cref="MiniGptModelState.Failed"/>).</summary>
    public string? FailureReason { get { lock (_lock) return _failure; } }

    /// <summary>The loaded pipeline, or null while it is not ready.</summary>
    public MiniGptPipeline? Pipeline { get { lock (_lock) return _pipeline; } }

    /// <summary>The model's <see cref="IChatClient"/> (logging each request's tokens and refusals), or null while it is not ready.</summary>
    public IChatClient? ChatClient { get { lock (_lock) return _chatClient; } }

    /// <summary>The id clients see: <see cref="MiniGptModelOptions.ModelId"/>, else the loaded variant's name, else the registration name.</summary>
    public string ModelId => Options.ModelId ?? Pipeline?.ModelName ?? Name;

    /// <summary>The chat client, or the reason there is none yet.</summary>
    /// <exception cref="MiniGptModelUnavailableException">Not loaded yet, or the load failed.</exception>
    public IChatClient GetChatClient() => ChatClient ?? throw Unavailable();

    /// <summary>The pipeline, or the reason there is none yet.</summary>
    /// <exception cref="MiniGptModelUnavailableException">Not loaded yet, or the load failed.</exception>
    public MiniGptPipeline GetPipeline() => Pipeline ?? throw Unavailable();

    /// <summary>Completes when the model is ready; faults with <see cref="MiniGptModelUnavailableException"/> when the load failed.</summary>
    public Task WhenReadyAsync(CancellationToken cancellationToken = default) => _loaded.Task.WaitAsync(cancellationToken);

    private MiniGptModelUnavailableException Unavailable()
    {
        lock (_lock)
        {
            return _state == MiniGptModelState.Failed
                ? new MiniGptModelUnavailableException($"Model '{Name}' failed to load: {_failure}", Name, _state)
                : new MiniGptModelUnavailableException($"Model '{Name}' is loading ({_progress:P0}); try again shortly.", Name, _state);
        }
    }

    /// <summary>Loads the model (on a pool thread; the caller does not wait on it).</summary>
    internal async Task LoadAsync(CancellationToken cancellationToken)
    {
        lock (_lock)
        {
            if (_state != MiniGptModelState.NotStarted) return;
            _state = MiniGptModelState.Loading;
        }
        var load = Options.ToLoadOptions();
        HostingLog.Loading(_logger, Name, Options.ModelPath, load.Device, load.DType, load.Threads?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "libtorch default",
            load.MaxConcurrentRequests, load.MaxQueuedRequests);
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        try
        {
            var progress = new LoadProgressLogger(this, _logger);
            var pipeline = await MiniGptPipeline.LoadAsync(Options.ModelPath, load, progress, cancellationToken).ConfigureAwait(false);
            var client = new LoggingChatClient(pipeline.AsIChatClient(new MiniGptChatClientOptions
            {
                ModelId = Options.ModelId,
                MaxCachedConversations = Options.MaxCachedConversations,
            }), _logger, Name);
            lock (_lock)
            {
                _pipeline = pipeline;
                _chatClient = client;
                _progress = 1;
                _state = MiniGptModelState.Ready;
            }
            HostingLog.Loaded(_logger, Name, pipeline.ModelName, pipeline.Variant.ToString(), load.DType,
                System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalSeconds);
            _loaded.TrySetResult();
        }
        catch (Exception ex)
        {
            var reason = ex is OperationCanceledException ? "the host stopped before the load finished" : ex.Message;
            lock (_lock)
            {
                _failure = reason;
                _state = MiniGptModelState.Failed;
            }
            HostingLog.LoadFailed(_logger, ex, Name, Options.ModelPath, reason);
            _loaded.TrySetException(Unavailable());
        }
    }

    internal void ReportProgress(double fraction)
    {
        lock (_lock) _progress = Math.Clamp(fraction, 0, 1);
    }

    /// <summary>Frees the chat client's caches and the pipeline (the container calls it).</summary>
    public void Dispose()
    {
        IChatClient? client; MiniGptPipeline? pipeline;
        lock (_lock)
        {
            client = _chatClient; pipeline = _pipeline;
            _chatClient = null; _pipeline = null;
            if (_state == MiniGptModelState.Ready) { _state = MiniGptModelState.Failed; _failure = "the host is shutting down"; }
        }
        client?.Dispose();
        pipeline?.Dispose();
    }

    /// <summary>Logs each new load stage once and keeps the fraction for the health check.</summary>
    private sealed class LoadProgressLogger(MiniGptModel model, ILogger logger) : IProgress<MiniGptProgress>
    {
        private string? _stage;

        public void Report(MiniGptProgress value)
        {
            model.ReportProgress(value.Fraction);
            if (value.Stage == _stage) return;
            _stage = value.Stage;
            HostingLog.LoadStage(logger, model.Name, value.Stage, value.Fraction, value.File);
        }
    }
}

/// <summary>A request came for a model that is not loaded (still loading, or its load failed): a server answers 503.</summary>
public sealed class MiniGptModelUnavailableException : MiniGptException
{
    /// <summary>Creates the exception.</summary>
    public MiniGptModelUnavailableException(string message, string modelName, MiniGptModelState state) : base(message)
    {
        ModelName = modelName; State = state;
    }

    /// <summary>The registration's name.</summary>
    public string ModelName { get; }

    /// <summary>Loading (try again later) or failed (it will not come).</summary>
    public MiniGptModelState State { get; }
}
