namespace MiniGpt4.Tests.Support;

/// <summary>
/// Runs code in a loop for a while as another thread forces garbage collections non-stop: the harness of the tests
/// for TorchSharp's temporary-Scalar race (docs/architecture.md).
/// </summary>
internal static class GcPressure
{
    /// <summary>Calls <paramref name="round"/> until <paramref name="duration"/> has passed; returns how many rounds ran.</summary>
    public static async Task<long> RunAsync(TimeSpan duration, Action round)
    {
        using var stop = new CancellationTokenSource();
        var collector = Task.Run(() =>
        {
            while (!stop.IsCancellationRequested) { GC.Collect(); GC.WaitForPendingFinalizers(); }
        });
        long rounds = 0;
        try
        {
            var until = DateTime.UtcNow + duration;
            while (DateTime.UtcNow < until)
            {
                round();
                rounds++;
            }
        }
        finally
        {
            stop.Cancel();
            await collector;
        }
        return rounds;
    }
}
