using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace MiniGpt4.Extensions.Hosting;

/// <summary>Healthy when the model is loaded; unhealthy while it loads (with its progress) and after a failed load (with the reason).</summary>
internal sealed class MiniGptHealthCheck(MiniGptModel model) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var data = new Dictionary<string, object> { ["model"] = model.Name, ["state"] = model.State.ToString() };
        var result = model.State switch
        {
            MiniGptModelState.Ready when model.Pipeline is { } p => HealthCheckResult.Healthy($"Model '{model.ModelId}' is ready.",
                new Dictionary<string, object>(data) { ["active_requests"] = p.ActiveRequests, ["queued_requests"] = p.QueuedRequests }),
            MiniGptModelState.Failed => new HealthCheckResult(context.Registration.FailureStatus, $"Model '{model.Name}' failed to load: {model.FailureReason}", data: data),
            _ => new HealthCheckResult(context.Registration.FailureStatus, $"Model '{model.Name}' is loading ({model.LoadProgress:P0}).", data: data),
        };
        return Task.FromResult(result);
    }
}
