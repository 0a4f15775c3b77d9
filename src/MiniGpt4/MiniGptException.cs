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
