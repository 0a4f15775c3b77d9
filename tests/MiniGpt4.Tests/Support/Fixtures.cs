using System.Text.Json.Nodes;
using Xunit;

namespace MiniGpt4.Tests.Support;

/// <summary>
/// Finds the read-only test fixtures in <c>../shared</c> (beside the repository root) or in
/// <c>$MINIGPT4_SHARED</c>. Tests that need them call <see cref="Require"/>: without the fixtures
/// a test is skipped with a visible reason, except under <c>CI=true</c>, where it fails.
/// </summary>
public static class Fixtures
{
    private static readonly Lazy<string?> SharedDir = new(Locate);

    /// <summary>The shared folder, or null when absent.</summary>
    public static string? Shared => SharedDir.Value;

    /// <summary>Absolute path of <paramref name="relative"/> under shared/, skipping (or failing on CI) when absent.</summary>
    public static string Require(string relative)
    {
        var root = Shared;
        var path = root is null ? null : Path.Combine(root, relative);
        if (path is not null && (File.Exists(path) || Directory.Exists(path))) return path;
        var reason = root is null
            ? "test fixtures not found: ../shared is absent (set MINIGPT4_SHARED to its path)"
            : $"test fixture missing: {Path.Combine(root, relative)}";
        if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
            throw new InvalidOperationException(reason + " (CI=true: fixtures are required)");
        Skip.If(true, reason);
        return path!; // unreachable
    }

    /// <summary>The JSON file at <paramref name="relative"/> under shared/, parsed (skipping or failing on CI when absent).</summary>
    public static JsonNode Json(string relative) => JsonNode.Parse(File.ReadAllText(Require(relative)))!;

    /// <summary>The repository root (the folder holding MiniGpt4.sln).</summary>
    public static string RepoRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "MiniGpt4.sln"))) return dir.FullName;
            throw new InvalidOperationException("MiniGpt4.sln not found above " + AppContext.BaseDirectory);
        }
    }

    private static string? Locate()
    {
        var env = Environment.GetEnvironmentVariable("MINIGPT4_SHARED");
        if (!string.IsNullOrEmpty(env) && Directory.Exists(env)) return Path.GetFullPath(env);
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (!File.Exists(Path.Combine(dir.FullName, "MiniGpt4.sln"))) continue;
            var candidate = Path.Combine(dir.Parent?.FullName ?? dir.FullName, "shared");
            return Directory.Exists(Path.Combine(candidate, "oracle")) ? candidate : null;
        }
        return null;
    }
}
