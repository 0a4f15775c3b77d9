using Microsoft.Extensions.DependencyInjection;

namespace MiniGpt4.Hosting;

/// <summary>Settings for <see cref="MiniGptServiceCollectionExtensions.AddMiniGpt4"/>.</summary>
public sealed class MiniGptHostingOptions
{
    /// <summary>Path of the model manifest (<c>minigpt4.json</c>) or its folder. Required.</summary>
    public string ModelPath { get; set; } = "";

    /// <summary>Device, dtype, threads and image limits.</summary>
    public MiniGptLoadOptions Load { get; set; } = new();

    /// <summary>Receives load progress, e.g. to log it.</summary>
    public IProgress<MiniGptProgress>? Progress { get; set; }
}

/// <summary>Registers MiniGpt4 in a service collection.</summary>
public static class MiniGptServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="MiniGptPipeline"/> as a singleton (it owns the weights; the container disposes it).
    /// The model loads on first resolution; resolve it at start-up to load eagerly.
    /// </summary>
    public static IServiceCollection AddMiniGpt4(this IServiceCollection services, Action<MiniGptHostingOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configure);
        var options = new MiniGptHostingOptions();
        configure(options);
        if (string.IsNullOrWhiteSpace(options.ModelPath))
            throw new MiniGptConfigurationException("AddMiniGpt4: ModelPath is required (a minigpt4.json manifest or its folder).");
        services.AddSingleton(_ => MiniGptPipeline.LoadAsync(options.ModelPath, options.Load, options.Progress).GetAwaiter().GetResult());
        return services;
    }
}
