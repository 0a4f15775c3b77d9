namespace MiniGpt4.Cli;

/// <summary>The process exit codes scripts can rely on.</summary>
internal static class ExitCodes
{
    public const int Ok = 0;
    /// <summary>A library error (<see cref="MiniGptException"/>): bad model files, images, configuration.</summary>
    public const int Error = 1;
    /// <summary>A usage error: unknown option or command, bad or missing value, no --model.</summary>
    public const int Usage = 2;
    /// <summary>Ctrl+C (128 + SIGINT, as shells report it).</summary>
    public const int Cancelled = 130;
}
