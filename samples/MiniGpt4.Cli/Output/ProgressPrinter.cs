namespace MiniGpt4.Cli.Output;

/// <summary>Load progress on stderr, one line per stage and tenth.</summary>
internal static class ProgressPrinter
{
    public static IProgress<MiniGptProgress> Create()
    {
        string? lastStage = null;
        var lastDecile = -1;
        return new Progress<MiniGptProgress>(p =>
        {
            var decile = (int)(p.Fraction * 10);
            if (p.Stage == lastStage && decile == lastDecile) return;
            lastStage = p.Stage;
            lastDecile = decile;
            Console.Error.WriteLine($"[load] {p.Fraction,4:P0} {p.Stage}{(p.File is null ? "" : " " + Path.GetFileName(p.File))}");
        });
    }
}
