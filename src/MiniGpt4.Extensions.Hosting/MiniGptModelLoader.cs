using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MiniGpt4.Extensions.Hosting;

/// <summary>
/// Starts loading every registered model when the host starts, without waiting for it (the host serves at once; the
/// health check says when a model is ready); on stop, cancels loads still running and waits, until the host's shutdown
/// timeout, for running and queued requests to finish (a graceful drain).
/// </summary>
internal sealed class MiniGptModelLoader(IServiceProvider services, MiniGptModelRegistry registry, ILogger<MiniGptModelLoader> logger) : IHostedService
{
    private readonly CancellationTokenSource _stopping = new();
    private readonly List<Task> _loads = new();

    public Task StartAsync(CancellationToken cancellationToken)
    {
        foreach (var name in registry.Names)
        {
            var model = services.GetRequiredKeyedService<MiniGptModel>(name);
            _loads.Add(Task.Run(() => model.LoadAsync(_stopping.Token), CancellationToken.None));
        }
        return Task.CompletedTask;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync().ConfigureAwait(false);
        try { await Task.WhenAll(_loads).WaitAsync(cancellationToken).ConfigureAwait(false); }
        catch (OperationCanceledException) { return; }
        foreach (var name in registry.Names)
        {
            var pipeline = services.GetRequiredKeyedService<MiniGptModel>(name).Pipeline;
            if (pipeline is null) continue;
            if (pipeline.ActiveRequests + pipeline.QueuedRequests > 0) HostingLog.Draining(logger, name, pipeline.ActiveRequests, pipeline.QueuedRequests);
            // The library raises no event when its last request ends: look every 50 ms until the shutdown timeout.
            while (pipeline.ActiveRequests + pipeline.QueuedRequests > 0 && !cancellationToken.IsCancellationRequested)
            {
                try { await Task.Delay(50, cancellationToken).ConfigureAwait(false); }
                catch (OperationCanceledException) { return; }
            }
        }
    }
}

/// <summary>The names of the registered models, in registration order.</summary>
internal sealed class MiniGptModelRegistry
{
    private readonly List<string> _names = new();

    public IReadOnlyList<string> Names => _names;

    public void Add(string name)
    {
        if (_names.Contains(name, StringComparer.Ordinal))
            throw new InvalidOperationException($"A MiniGpt4 model named '{name}' is already registered.");
        _names.Add(name);
    }
}
