namespace MiniGpt4.Extensions.Hosting;

/// <summary>
/// One served model, bound from an <c>IConfiguration</c> section (for example <c>"MiniGpt4"</c> in appsettings.json or
/// <c>MiniGpt4__ModelPath</c> in the environment) and checked when the host starts (<c>ValidateOnStart</c>): a value out of
/// range stops the host at once; a model that fails to load does not (the health check reports it).
/// </summary>
public sealed class MiniGptModelOptions
{
    /// <summary>The model manifest (<c>minigpt4.json</c>) or its folder. Required. A relative path is taken against the
    /// process's current directory when the options are read.</summary>
    public string ModelPath { get; set; } = "";

    /// <summary>The id clients see (<c>/v1/models</c>, responses); default: the variant's name.</summary>
    public string? ModelId { get; set; }

    /// <summary><c>cpu</c> (default), <c>cuda</c> or <c>cuda:N</c>.</summary>
    public string Device { get; set; } = "cpu";

    /// <summary>Weights and activations dtype (default bfloat16; float32 for the reference's numbers).</summary>
    public MiniGptDType DType { get; set; } = MiniGptDType.BFloat16;

    /// <summary>libtorch intra-op threads (process-wide); null leaves libtorch's default.</summary>
    public int? Threads { get; set; }

    /// <summary>Most positions a conversation's cache holds; null: the model's own.</summary>
    public int? ContextLength { get; set; }

    /// <summary>Requests that run at once (default 8).</summary>
    public int MaxConcurrentRequests { get; set; } = 8;

    /// <summary>Requests that may wait; one more is refused (a server's 429). Default 16.</summary>
    public int MaxQueuedRequests { get; set; } = 16;

    /// <summary>Memory budget for caches and image buffers; null: a quarter of the available memory.</summary>
    public long? MemoryBudgetBytes { get; set; }

    /// <summary>Map weight files instead of copying them (default true).</summary>
    public bool MemoryMapWeights { get; set; } = true;

    /// <summary>Keep float16 weights as stored instead of converting them to bfloat16 while loading (default true; see <see cref="MiniGptLoadOptions.KeepFloat16Weights"/>).</summary>
    public bool KeepFloat16Weights { get; set; } = true;

    /// <summary>Conversations the chat client keeps for cache reuse between requests (default 4).</summary>
    public int MaxCachedConversations { get; set; } = 4;

    /// <summary>The library's load options these settings stand for.</summary>
    public MiniGptLoadOptions ToLoadOptions() => new()
    {
        Device = Device,
        DType = DType,
        Threads = Threads,
        ContextLength = ContextLength,
        MaxConcurrentRequests = MaxConcurrentRequests,
        MaxQueuedRequests = MaxQueuedRequests,
        MemoryBudgetBytes = MemoryBudgetBytes,
        MemoryMapWeights = MemoryMapWeights,
        KeepFloat16Weights = KeepFloat16Weights,
    };
}
