using Xunit;

namespace MiniGpt4.Tests.Serving;

/// <summary>One host for the tests that do not change its settings: the tiny Vicuna-0 in float32, an API key required.</summary>
public sealed class ServingFixture : IAsyncLifetime
{
    public const string ApiKey = "test-key-123";

    private ServingHost? _host;

    /// <summary>The host (skips when shared/ is absent).</summary>
    public ServingHost Host { get { _ = ServingHost.Manifest; return _host!; } }

    public async Task InitializeAsync()
    {
        try { _ = ServingHost.Manifest; }
        catch (SkipException) { return; } // each test skips visibly through Host
        _host = await ServingHost.StartAsync(server: s => s.ApiKey = ApiKey);
    }

    public async Task DisposeAsync()
    {
        if (_host is not null) await _host.DisposeAsync();
    }
}
