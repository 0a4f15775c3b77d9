using System.Diagnostics;

namespace MiniGpt4.Tests.Support;

/// <summary>Runs the console sample (built beside the tests) as a real process, as a user would.</summary>
internal static class CliProcess
{
    /// <summary>Runs <c>dotnet MiniGpt4.Cli.dll args…</c>, writing <paramref name="stdin"/> (when given) to its input; returns the exit code and both outputs.</summary>
    public static async Task<(int Exit, string Stdout, string Stderr)> RunAsync(string? stdin, params string[] args)
    {
        var psi = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = stdin is not null, UseShellExecute = false,
        };
        psi.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "MiniGpt4.Cli.dll"));
        foreach (var a in args) psi.ArgumentList.Add(a);
        using var process = Process.Start(psi)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (stdin is not null)
        {
            await process.StandardInput.WriteAsync(stdin);
            process.StandardInput.Close();
        }
        await process.WaitForExitAsync();
        return (process.ExitCode, await stdout, await stderr);
    }
}
