namespace MiniGpt4;

/// <summary>
/// Thrown when TorchSharp's native runtime (libtorch) cannot be loaded. The message names the
/// missing piece (a libtorch backend package, or a new enough libstdc++ on Linux) and the fix.
/// </summary>
public sealed class MiniGptNativeRuntimeException : MiniGptException
{
    /// <summary>Creates the exception.</summary>
    public MiniGptNativeRuntimeException(string message, Exception? inner = null) : base(message, inner) { }
}
