namespace MiniGpt4.Cli.Output;

/// <summary>Load progress on stderr, one line per stage and tenth.</summary>
internal static class ProgressPrinter
{
    public static IProgress<MiniGptProgress> Create() => new Printer();

    /// <summary>
    /// Prints on the reporting thread, in report order. <see cref="Progress{T}"/> would post each report to the thread
    /// pool in a console program, where they run concurrently and print out of order (70 %, 31 %, 86 %, ...).
    /// </summary>
    private sealed class Printer : IProgress<MiniGptProgress>
    {
        private readonly Lock _gate = new();
        private string? _lastStage;
        private int _lastDecile = -1;

        public void Report(MiniGptProgress p)
        {
            var decile = (int)(p.Fraction * 10);
            lock (_gate)
            {
                if (p.Stage == _lastStage && decile == _lastDecile) return;
                _lastStage = p.Stage;
                _lastDecile = decile;
                Console.Error.WriteLine($"[load] {p.Fraction,4:P0} {p.Stage}{(p.File is null ? "" : " " + Path.GetFileName(p.File))}");
            }
        }
    }
}
