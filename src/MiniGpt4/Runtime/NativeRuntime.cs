using System.Runtime.InteropServices;
using TorchSharp;

namespace MiniGpt4.Runtime;

/// <summary>
/// Makes sure TorchSharp's native libraries load, once per process, and turns a load
/// failure into one <see cref="MiniGptNativeRuntimeException"/> that names the missing piece.
/// </summary>
internal static class NativeRuntime
{
    private static readonly object Gate = new();
    private static bool _ready;

    /// <summary>Loads libtorch (idempotent); throws <see cref="MiniGptNativeRuntimeException"/> on failure.</summary>
    public static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (_ready) return;
            try
            {
                // Touching any torch API runs TorchSharp's static initialiser, which loads
                // libLibTorchSharp and libtorch. A tiny tensor proves the backend works.
                using var probe = torch.zeros(1);
            }
            catch (Exception ex) when (ex is TypeInitializationException or DllNotFoundException
                                            or NotSupportedException or InvalidOperationException
                                            or BadImageFormatException or EntryPointNotFoundException)
            {
                throw new MiniGptNativeRuntimeException(Diagnose(ex, ProbeLoaderError()), ex);
            }
            _ready = true;
        }
    }

    /// <summary>
    /// Builds the message: what failed, why (as far as we can tell, helped by the OS loader's message), what the
    /// application's folder holds (<paramref name="appDirectory"/>, default <see cref="AppContext.BaseDirectory"/>) and the fix.
    /// </summary>
    internal static string Diagnose(Exception ex, string? loaderError = null, string? appDirectory = null)
    {
        var root = ex.GetBaseException();
        var detail = root.Message;
        var lines = new List<string> { "TorchSharp's native runtime (libtorch) could not be loaded." };

        if (loaderError is not null && loaderError.Contains("GLIBCXX", StringComparison.Ordinal) ||
            loaderError is null && OperatingSystem.IsLinux() && LacksGlibcxx("GLIBCXX_3.4.32"))
        {
            lines.Add("Cause: the system libstdc++ lacks GLIBCXX_3.4.32, which TorchSharp 0.107 needs (GCC 13 or newer).");
            lines.Add("Fix: run eng/bootstrap-linux.sh from the MiniGpt4.NET repository, or on Debian 12 add a trixie apt source " +
                      "and run 'apt-get install -t trixie libstdc++6'; on Ubuntu 22.04 install libstdc++6 from the ubuntu-toolchain-r/test PPA.");
        }
        else if (detail.Contains("torch_cpu", StringComparison.OrdinalIgnoreCase) ||
                 detail.Contains("LibTorchSharp", StringComparison.OrdinalIgnoreCase) ||
                 ex is DllNotFoundException || root is DllNotFoundException)
        {
            lines.Add("Cause: no libtorch backend package is referenced by the application.");
            lines.Add("Fix: add a backend next to MiniGpt4 in the application project: " +
                      "'libtorch-cpu-linux-x64' 2.10.0 (CPU, Linux), 'libtorch-cpu-win-x64', 'libtorch-cpu-osx-arm64', " +
                      "or a libtorch-cuda-12.8 package for NVIDIA GPUs.");
        }
        else
        {
            lines.Add("Fix: reference TorchSharp 0.107.0 plus one libtorch backend package (e.g. libtorch-cpu-linux-x64 2.10.0).");
        }
        lines.Add(DescribeDeployment(appDirectory ?? AppContext.BaseDirectory));
        lines.Add("Note: when TorchSharp.dll itself is loaded from the NuGet package cache (notebooks, F# scripts), TorchSharp copies libtorch " +
                  "out of that cache, so code that ran there or on a developer machine can fail once deployed: reference the backend package " +
                  "in the application project itself (not only in a test or library project) and test the published output.");
        if (loaderError is not null) lines.Add($"Loader error: {MostTelling(loaderError)}");
        lines.Add($"Underlying error: {root.GetType().Name}: {FirstLine(detail)}");
        return string.Join(Environment.NewLine, lines);
    }

    /// <summary>
    /// What can be detected without loading anything: whether the application folder holds TorchSharp's native shim and
    /// libtorch (beside the app or under runtimes/&lt;rid&gt;/native) and which libtorch packages its .deps.json lists.
    /// </summary>
    internal static string DescribeDeployment(string appDirectory)
    {
        var (shim, torch, cuda) = OperatingSystem.IsWindows() ? ("LibTorchSharp.dll", "torch_cpu.dll", "torch_cuda.dll")
            : OperatingSystem.IsMacOS() ? ("libLibTorchSharp.dylib", "libtorch_cpu.dylib", "libtorch_cuda.dylib")
            : ("libLibTorchSharp.so", "libtorch_cpu.so", "libtorch_cuda.so");
        var dirs = new[] { appDirectory, Path.Combine(appDirectory, "runtimes", RuntimeInformation.RuntimeIdentifier, "native") };
        string Where(string file) => dirs.Select(d => Path.Combine(d, file)).FirstOrDefault(File.Exists) is { } found
            ? $"found ({Path.GetRelativePath(appDirectory, found)})" : "missing";
        var packages = new SortedSet<string>(StringComparer.Ordinal);
        try
        {
            foreach (var deps in Directory.EnumerateFiles(appDirectory, "*.deps.json"))
                foreach (System.Text.RegularExpressions.Match m in System.Text.RegularExpressions.Regex.Matches(
                             File.ReadAllText(deps), "\"(libtorch-[A-Za-z0-9.-]+)/([0-9][A-Za-z0-9.-]*)\""))
                    packages.Add($"{m.Groups[1].Value} {m.Groups[2].Value}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
        }
        var listed = packages.Count == 0 ? "its .deps.json lists no libtorch package"
            : $"its .deps.json lists {string.Join(", ", packages.Where(p => !p.Contains("-part", StringComparison.Ordinal)).DefaultIfEmpty(packages.First()))}";
        return $"Detected in the application folder '{appDirectory}' ({RuntimeInformation.RuntimeIdentifier}): {shim} {Where(shim)}, " +
               $"{torch} {Where(torch)}, {cuda} {Where(cuda)}; {listed}.";
    }

    /// <summary>
    /// Loads TorchSharp's native shim from where the app's backend package puts it and returns the
    /// operating system loader's message (e.g. "version `GLIBCXX_3.4.32' not found"), or null when
    /// it loads or is absent. TorchSharp's own message blames a missing package in both cases.
    /// </summary>
    private static string? ProbeLoaderError()
    {
        var name = OperatingSystem.IsLinux() ? "libLibTorchSharp.so" : OperatingSystem.IsMacOS() ? "libLibTorchSharp.dylib" : "LibTorchSharp.dll";
        var dir = AppContext.BaseDirectory;
        var shim = new[] { dir, Path.Combine(dir, "runtimes", RuntimeInformation.RuntimeIdentifier, "native"), Path.Combine(dir, "cpu") }
            .Select(d => Path.Combine(d, name)).FirstOrDefault(File.Exists);
        if (shim is null) return null;
        try
        {
            NativeLibrary.Free(NativeLibrary.Load(shim));
            return null;
        }
        catch (Exception ex) when (ex is DllNotFoundException or BadImageFormatException)
        {
            return ex.Message;
        }
    }

    private static string MostTelling(string message)
    {
        var lines = message.Split('\n', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries);
        return lines.FirstOrDefault(l => l.Contains("GLIBCXX", StringComparison.Ordinal))
               ?? lines.FirstOrDefault(l => l.Contains("not found", StringComparison.OrdinalIgnoreCase))
               ?? FirstLine(message);
    }

    private static string FirstLine(string s) => s.Split('\n')[0].TrimEnd();

    private static bool LacksGlibcxx(string version)
    {
        var path = new[] { "/usr/lib/x86_64-linux-gnu/libstdc++.so.6", "/usr/lib/aarch64-linux-gnu/libstdc++.so.6", "/usr/lib64/libstdc++.so.6" }
            .FirstOrDefault(File.Exists);
        try
        {
            return path is not null && File.ReadAllBytes(path).AsSpan().IndexOf(System.Text.Encoding.ASCII.GetBytes(version)) < 0;
        }
        catch (IOException)
        {
            return false;
        }
    }
}
