using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;

namespace MiniGpt4.Extensions.Hosting;

/// <summary>Registers MiniGpt4 models in a generic host (ASP.NET Core, worker services).</summary>
public static class MiniGptHostingServiceCollectionExtensions
{
    /// <summary>The default model's name (the key of the unkeyed registration).</summary>
    public const string DefaultModelName = "minigpt4";

    /// <summary>
    /// Registers the default model: <see cref="MiniGptModelOptions"/> bound from <paramref name="configuration"/> (a section
    /// such as <c>builder.Configuration.GetSection("MiniGpt4")</c>) then <paramref name="configure"/>, validated when the host
    /// starts; a hosted service that loads it in the background; a health check named <c>minigpt4</c>. Resolve
    /// <see cref="MiniGptModel"/> (unkeyed, or keyed <see cref="DefaultModelName"/>).
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="services"/> or <paramref name="configuration"/> is null.</exception>
    public static IServiceCollection AddMiniGpt4Model(this IServiceCollection services, IConfiguration configuration, Action<MiniGptModelOptions>? configure = null)
    {
        AddKeyedMiniGpt4Model(services, DefaultModelName, configuration, configure);
        services.TryAddSingleton(sp => sp.GetRequiredKeyedService<MiniGptModel>(DefaultModelName));
        return services;
    }

    /// <summary>
    /// Registers one more model under <paramref name="name"/> (a service key: resolve it with
    /// <c>[FromKeyedServices("name")] MiniGptModel</c>), with its own options, loading and health check <c>minigpt4:name</c>.
    /// Several models share the process's memory and libtorch threads.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="services"/> or <paramref name="configuration"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="name"/> is empty.</exception>
    /// <exception cref="InvalidOperationException">A model of that name is already registered.</exception>
    public static IServiceCollection AddKeyedMiniGpt4Model(this IServiceCollection services, string name, IConfiguration configuration, Action<MiniGptModelOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(configuration);
        ArgumentException.ThrowIfNullOrWhiteSpace(name);
        var registry = services.LastOrDefault(d => d.ServiceType == typeof(MiniGptModelRegistry))?.ImplementationInstance as MiniGptModelRegistry;
        if (registry is null)
        {
            registry = new MiniGptModelRegistry();
            services.AddSingleton(registry);
            services.AddHostedService<MiniGptModelLoader>();
        }
        registry.Add(name);

        var section = (configuration as IConfigurationSection)?.Path ?? "configuration";
        var builder = services.AddOptions<MiniGptModelOptions>(name).Bind(configuration);
        if (configure is not null) builder.Configure(configure);
        builder.PostConfigure(o =>
        {
            if (!string.IsNullOrWhiteSpace(o.ModelPath)) o.ModelPath = Path.GetFullPath(o.ModelPath);
        });
        builder.ValidateOnStart();
        services.AddSingleton<IValidateOptions<MiniGptModelOptions>>(new MiniGptModelOptionsValidator(name, section));

        services.AddKeyedSingleton(name, (sp, _) => new MiniGptModel(name,
            sp.GetRequiredService<IOptionsMonitor<MiniGptModelOptions>>().Get(name),
            sp.GetService<ILoggerFactory>()?.CreateLogger("MiniGpt4.Extensions.Hosting.MiniGptModel") ?? NullLogger.Instance));
        services.AddHealthChecks().Add(new HealthCheckRegistration(
            name == DefaultModelName ? DefaultModelName : $"{DefaultModelName}:{name}",
            sp => new MiniGptHealthCheck(sp.GetRequiredKeyedService<MiniGptModel>(name)),
            HealthStatus.Unhealthy, ["minigpt4", "ready"]));
        return services;
    }
}
