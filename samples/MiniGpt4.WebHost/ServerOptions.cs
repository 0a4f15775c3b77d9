namespace MiniGpt4.WebHost;

/// <summary>The HTTP side of the sample, bound from the <c>Server</c> configuration section.</summary>
public sealed class ServerOptions
{
    /// <summary>When set, <c>/v1/*</c> requires <c>Authorization: Bearer &lt;key&gt;</c>.</summary>
    public string? ApiKey { get; set; }

    /// <summary>Origins allowed by CORS; none (the default) leaves CORS off.</summary>
    public string[] CorsOrigins { get; set; } = [];

    /// <summary>Hosts whose <c>http(s)</c> image URLs the server may download; none (the default) refuses every URL.</summary>
    public string[] AllowedImageHosts { get; set; } = [];

    /// <summary>Largest request body in bytes (default 32 MiB: a few base64 images).</summary>
    public long MaxRequestBodyBytes { get; set; } = 32L << 20;

    /// <summary>Largest image downloaded from an allowed host, in bytes (default 16 MiB).</summary>
    public long MaxDownloadedImageBytes { get; set; } = 16L << 20;
}
