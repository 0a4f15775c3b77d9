namespace MiniGpt4;

/// <summary>Base class of the exceptions MiniGpt4 throws for bad input, files or configuration.</summary>
public class MiniGptException : Exception
{
    /// <summary>Creates the exception.</summary>
    public MiniGptException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// A weight file or folder is unreadable, corrupt, hostile or does not fit the model: the message
/// names the file and, where it applies, the tensor key, the expected and the actual shape or dtype.
/// </summary>
public sealed class MiniGptWeightsException : MiniGptException
{
    /// <summary>Creates the exception.</summary>
    public MiniGptWeightsException(string message, string? file = null, string? key = null, Exception? inner = null)
        : base(message, inner) { File = file; Key = key; }

    /// <summary>The file at fault, when known.</summary>
    public string? File { get; }

    /// <summary>The tensor key at fault, when known.</summary>
    public string? Key { get; }
}

/// <summary>An image could not be decoded or is refused (unknown or disabled format, truncated, over the pixel budget).</summary>
public sealed class MiniGptImageException : MiniGptException
{
    /// <summary>Creates the exception.</summary>
    public MiniGptImageException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>A model manifest, configuration file or option is invalid or inconsistent.</summary>
public sealed class MiniGptConfigurationException : MiniGptException
{
    /// <summary>Creates the exception.</summary>
    public MiniGptConfigurationException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// The request was refused because the queue of waiting requests is full
/// (<see cref="MiniGptLoadOptions.MaxQueuedRequests"/>); nothing was done. A server answers 429 and
/// the client retries later.
/// </summary>
public sealed class MiniGptQueueFullException : MiniGptException
{
    /// <summary>Creates the exception.</summary>
    public MiniGptQueueFullException(string message, int queueDepth) : base(message) => QueueDepth = queueDepth;

    /// <summary>Requests that were waiting when this one was refused.</summary>
    public int QueueDepth { get; }
}

/// <summary>
/// The request needs more memory (KV cache for its prompt plus new tokens, image buffers) than the
/// pipeline's whole budget (<see cref="MiniGptLoadOptions.MemoryBudgetBytes"/>): it can never run, so it is
/// refused at once instead of waiting.
/// </summary>
public sealed class MiniGptCapacityException : MiniGptException
{
    /// <summary>Creates the exception.</summary>
    public MiniGptCapacityException(string message, long requestedBytes, long budgetBytes) : base(message)
    {
        RequestedBytes = requestedBytes; BudgetBytes = budgetBytes;
    }

    /// <summary>What the request would reserve.</summary>
    public long RequestedBytes { get; }

    /// <summary>The pipeline's memory budget.</summary>
    public long BudgetBytes { get; }
}

/// <summary>
/// The prompt plus <see cref="GenerationOptions.MaxNewTokens"/> does not fit the context
/// (<see cref="GenerationOptions.MaxContextLength"/> or the model's own). By default the request is refused
/// rather than cut from the left as the reference does (which can drop an image); set
/// <see cref="GenerationOptions.TruncatePromptFromLeft"/> for the reference's behaviour.
/// </summary>
public sealed class MiniGptContextLengthException : MiniGptException
{
    /// <summary>Creates the exception.</summary>
    public MiniGptContextLengthException(string message, int promptTokens, int maxNewTokens, int contextLength) : base(message)
    {
        PromptTokens = promptTokens; MaxNewTokens = maxNewTokens; ContextLength = contextLength;
    }

    /// <summary>Positions of the prompt (text tokens plus image embeddings).</summary>
    public int PromptTokens { get; }

    /// <summary>The requested maximum of new tokens.</summary>
    public int MaxNewTokens { get; }

    /// <summary>The context the two had to fit in.</summary>
    public int ContextLength { get; }
}

/// <summary>
/// The model produced non-finite logits (NaN or infinity): its weights or inputs are broken
/// (for example NaN weights in a checkpoint, or a float16 overflow). Raised at the step where it
/// happens instead of returning a meaningless token.
/// </summary>
public sealed class MiniGptNumericsException : MiniGptException
{
    /// <summary>Creates the exception.</summary>
    public MiniGptNumericsException(string message, int step) : base(message) => Step = step;

    /// <summary>The generation step (0 = the logits after the prompt).</summary>
    public int Step { get; }
}

/// <summary>
/// The bounds checks of a configuration (a <c>config.json</c>, a model manifest, load options): each refusal is a
/// <see cref="MiniGptConfigurationException"/> whose message starts with <paramref name="Where"/> (the file or
/// the options) and names the field.
/// </summary>
internal readonly record struct ConfigCheck(string Where)
{
    /// <summary>Requires 0 &lt; <paramref name="value"/> &lt;= <paramref name="max"/>.</summary>
    public void InRange(string field, int value, int max)
    {
        if (value <= 0) throw Error($"{field} must be positive (got {value})");
        if (value > max) throw Error($"{field} = {value} is over the limit of {max}");
    }

    /// <summary>Requires a finite <paramref name="value"/> with 0 &lt; value &lt; <paramref name="below"/>.</summary>
    public void Positive(string field, double value, double below = double.PositiveInfinity)
    {
        if (!(value > 0 && value < below && double.IsFinite(value)))
            throw Error($"{field} must be positive and finite{(double.IsFinite(below) ? $" and below {below}" : "")} (got {value})");
    }

    /// <summary>Refuses the configuration with <paramref name="problem"/> unless <paramref name="ok"/>.</summary>
    public void Require(bool ok, string problem)
    {
        if (!ok) throw Error(problem);
    }

    /// <summary>The refusal for <paramref name="problem"/>.</summary>
    public MiniGptConfigurationException Error(string problem, Exception? inner = null) => new($"{Where}: {problem}.", inner);
}
