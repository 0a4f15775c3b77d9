using System.Diagnostics;
using System.IO.Compression;
using System.Text.Json.Nodes;
using System.Xml.Linq;
using MiniGpt4.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt4.Tests.Packaging;

/// <summary>
/// The packages as a user gets them: <c>eng/pack.sh</c> packs the libraries into a temporary folder feed, and the console
/// program in <c>tests/PackageConsumer</c> (not in MiniGpt4.sln), copied out of the repository so that none of its build
/// files apply, restores MiniGpt4 and MiniGpt4.Extensions.AI from that feed (third-party packages from the machine's
/// package cache or the configured sources), builds, and asks the tiny oracle model about an image through
/// <c>IChatClient</c> under <c>UseOpenTelemetry</c>, printing what it saw as JSON.
/// </summary>
public sealed class PackageConsumerTests(ITestOutputHelper output)
{
    private static readonly string[] Packages = ["MiniGpt4.Abstractions", "MiniGpt4", "MiniGpt4.Imaging.Skia", "MiniGpt4.Extensions.AI", "MiniGpt4.Extensions.Hosting"];

    [SkippableFact]
    public async Task The_packed_packages_answer_about_an_image_through_IChatClient_with_spans_and_metrics()
    {
        var manifest = Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json");
        var imageA = Oracle.Image("a_gradient_shapes_640x480.png");
        var imageB = Oracle.Image("b_tall_100x300.jpg");
        var repo = Fixtures.RepoRoot;
        using var dir = new TempDir();
        var feed = dir.File("feed");
        var clock = Stopwatch.StartNew();

        // 1. Pack (the Release build the tests run from is the one packed; a Debug test run lets pack build Release).
#if DEBUG
        await RunAsync(repo, "bash", "eng/pack.sh", feed);
#else
        await RunAsync(repo, "bash", "eng/pack.sh", feed, "--no-build");
#endif
        var version = CheckPackages(feed);
        output.WriteLine($"packed {version} in {clock.Elapsed.TotalSeconds:0.0} s");

        // 2. The consumer, outside the repository, with a nuget.config: the local feed, a package folder of its own (so a
        //    package of the same version restored earlier cannot stand in for the one just packed) and the machine's
        //    package cache as a fallback folder for the third-party packages (nothing to download again).
        var consumer = dir.File("consumer");
        Directory.CreateDirectory(consumer);
        foreach (var file in new[] { "PackageConsumer.csproj", "Program.cs", "Directory.Build.props", "Directory.Packages.props" })
            File.Copy(Path.Combine(repo, "tests", "PackageConsumer", file), Path.Combine(consumer, file));
        var machineCache = (await RunAsync(repo, "dotnet", "nuget", "locals", "global-packages", "--list")).Split(':', 2)[1].Trim();
        var packages = dir.File("packages");
        new XDocument(new XElement("configuration",
            new XElement("config", Add("globalPackagesFolder", packages)),
            new XElement("packageSources", Add("minigpt4-local", feed)),
            new XElement("fallbackPackageFolders", Add("machine-cache", machineCache)))).Save(Path.Combine(consumer, "nuget.config"));
        await RunAsync(consumer, "dotnet", "build", "PackageConsumer.csproj", "-c", "Release", "--disable-build-servers", "-nologo",
            $"-p:MiniGpt4RepoRoot={repo}{Path.DirectorySeparatorChar}", $"-p:MiniGpt4PackageVersion={version}",
            "-p:CreateHardLinksForCopyLocalIfPossible=true"); // libtorch is half a gigabyte
        output.WriteLine($"restored and built at {clock.Elapsed.TotalSeconds:0.0} s");
        foreach (var id in new[] { "MiniGpt4", "MiniGpt4.Extensions.AI", "MiniGpt4.Abstractions" })
        {
            // Restored from the feed just packed, not from a project reference or another source.
            var metadata = JsonNode.Parse(File.ReadAllText(Path.Combine(packages, id.ToLowerInvariant(), version, ".nupkg.metadata")))!;
            Assert.Equal(Path.GetFullPath(feed), Path.GetFullPath(metadata["source"]!.GetValue<string>()));
        }
        var assets = JsonNode.Parse(File.ReadAllText(Path.Combine(consumer, "obj", "project.assets.json")))!;
        Assert.Equal("package", assets["libraries"]![$"MiniGpt4/{version}"]!["type"]!.GetValue<string>());

        // 3. Run it.
        var dll = Path.Combine(consumer, "bin", "Release", "net10.0", "PackageConsumer.dll");
        var report = JsonNode.Parse(await RunAsync(consumer, "dotnet", dll, manifest, imageA, imageB))!;
        output.WriteLine($"ran at {clock.Elapsed.TotalSeconds:0.0} s");
        Assert.Equal(version, report["minigpt4_version"]!.GetValue<string>().Split('+')[0]);
        Assert.Equal(version, report["extensions_ai_version"]!.GetValue<string>().Split('+')[0]);

        // The image reached the model: the same question about another image gets another answer.
        var answers = report["answers"]!.AsArray();
        Assert.Equal(2, answers.Count);
        Assert.NotEqual(answers[0]!["text"]!.GetValue<string>(), answers[1]!["text"]!.GetValue<string>());
        foreach (var a in answers)
        {
            Assert.False(string.IsNullOrEmpty(a!["text"]!.GetValue<string>()));
            Assert.Contains(a["finish_reason"]!.GetValue<string>(), new[] { "stop", "length" });
            Assert.True(a["input_tokens"]!.GetValue<long>() > 32, a.ToJsonString());
            Assert.InRange(a["output_tokens"]!.GetValue<long>(), 1, 12);
            Assert.Equal(32, a["image_tokens"]!.GetValue<long>()); // the tiny model's 32 query tokens
        }

        // Spans: per request, Microsoft.Extensions.AI's CLIENT span and the library's INTERNAL "chat {model}" span under
        // it in the same trace, with the usage and the finish reason.
        var spans = report["spans"]!.AsArray().Select(s => s!).ToList();
        var clientSpans = spans.Where(s => s["source"]!.GetValue<string>() == "PackageConsumer").ToList();
        var modelSpans = spans.Where(s => s["source"]!.GetValue<string>() == "MiniGpt4").ToList();
        Assert.Equal(2, clientSpans.Count);
        Assert.Equal(2, modelSpans.Count);
        foreach (var (answer, span) in answers.Select(a => a!).Zip(clientSpans.Select(c => modelSpans.Single(m =>
                     m["parent_span_id"]!.GetValue<string>() == c["span_id"]!.GetValue<string>() && m["trace_id"]!.GetValue<string>() == c["trace_id"]!.GetValue<string>()))))
        {
            Assert.Equal("chat minigpt4-vicuna0", span["name"]!.GetValue<string>());
            Assert.Equal("Internal", span["kind"]!.GetValue<string>());
            var tags = span["tags"]!;
            Assert.Equal("chat", tags["gen_ai.operation.name"]!.GetValue<string>());
            Assert.Equal("minigpt4-vicuna0", tags["gen_ai.request.model"]!.GetValue<string>());
            Assert.Equal("0", tags["gen_ai.request.temperature"]!.GetValue<string>());
            Assert.NotNull(tags["gen_ai.usage.input_tokens"]);
            Assert.NotNull(tags["gen_ai.usage.output_tokens"]);
            Assert.Contains(tags["gen_ai.response.finish_reasons"]!.GetValue<string>(), new[] { "stop", "length" });
        }
        Assert.All(clientSpans, c => Assert.Equal("Client", c["kind"]!.GetValue<string>()));
        var usages = modelSpans.Select(s => (s["tags"]!["gen_ai.usage.input_tokens"]!.GetValue<string>(), s["tags"]!["gen_ai.usage.output_tokens"]!.GetValue<string>())).Order();
        Assert.Equal(answers.Select(a => (a!["input_tokens"]!.ToString(), a["output_tokens"]!.ToString())).Order(), usages);

        // Metrics: the library's gen_ai.server.* and minigpt4.* (the second question queued behind the first), and no
        // name in common with Microsoft.Extensions.AI's gen_ai.client.* ones.
        Assert.Equal(1, report["queued_while_streaming"]!.GetValue<int>());
        var metrics = report["metrics"]!.AsArray().Select(m => (Meter: m!["meter"]!.GetValue<string>(), Name: m["name"]!.GetValue<string>())).ToList();
        var server = metrics.Where(m => m.Meter == "MiniGpt4").Select(m => m.Name).ToHashSet();
        var client = metrics.Where(m => m.Meter == "PackageConsumer").Select(m => m.Name).ToHashSet();
        foreach (var name in new[] { "gen_ai.server.request.duration", "gen_ai.server.time_to_first_token", "gen_ai.server.time_per_output_token",
                     "gen_ai.server.token.usage", "minigpt4.server.image_tokens", "minigpt4.server.queue.depth", "minigpt4.server.queue.wait_duration",
                     "minigpt4.server.active_requests" })
            Assert.Contains(name, server);
        Assert.Contains("gen_ai.client.operation.duration", client);
        Assert.Contains("gen_ai.client.token.usage", client);
        Assert.Empty(server.Intersect(client));
        output.WriteLine($"total {clock.Elapsed.TotalSeconds:0.0} s");

        static XElement Add(string key, string value) => new("add", new XAttribute("key", key), new XAttribute("value", value));
    }

    /// <summary>
    /// Every library is packed in one version with its README, the LICENSE, its XML docs and a symbol package; returns the version.
    /// </summary>
    private static string CheckPackages(string feed)
    {
        string? version = null;
        foreach (var id in Packages)
        {
            var nupkg = Assert.Single(Directory.GetFiles(feed, id + ".*.nupkg"), f => char.IsDigit(Path.GetFileName(f)[(id.Length + 1)..][0]));
            var v = Path.GetFileNameWithoutExtension(nupkg)[(id.Length + 1)..];
            Assert.Equal(version ?? v, v);
            version = v;
            using (var zip = ZipFile.OpenRead(nupkg))
            {
                var nuspec = XDocument.Load(zip.Entries.Single(e => e.FullName == id + ".nuspec").Open());
                var ns = nuspec.Root!.GetDefaultNamespace();
                var metadata = nuspec.Root.Element(ns + "metadata")!;
                Assert.Equal("README.md", metadata.Element(ns + "readme")?.Value);
                Assert.NotNull(metadata.Element(ns + "repository")?.Attribute("url"));
                var names = zip.Entries.Select(e => e.FullName).ToHashSet();
                Assert.Contains("README.md", names);
                Assert.Contains("LICENSE", names);
                Assert.Contains($"lib/net10.0/{id}.dll", names);
                Assert.Contains($"lib/net10.0/{id}.xml", names);
            }
            using var symbols = ZipFile.OpenRead(Path.ChangeExtension(nupkg, ".snupkg"));
            Assert.Contains(symbols.Entries, e => e.FullName == $"lib/net10.0/{id}.pdb");
        }
        return version!;
    }

    /// <summary>Runs a command in <paramref name="workingDirectory"/>; fails the test with its output unless it exits with 0. Returns its standard output.</summary>
    private async Task<string> RunAsync(string workingDirectory, string command, params string[] args)
    {
        var psi = new ProcessStartInfo(command)
        {
            WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        foreach (var a in args) psi.ArgumentList.Add(a);
        // No MSBuild node or compiler server may outlive the command: it would hold the redirected output open.
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        using var p = Process.Start(psi)!;
        var stdout = p.StandardOutput.ReadToEndAsync();
        var stderr = p.StandardError.ReadToEndAsync();
        await p.WaitForExitAsync();
        var (o, e) = (await stdout, await stderr);
        Assert.True(p.ExitCode == 0, $"{command} {string.Join(' ', args)} exited with {p.ExitCode}:\n{o}\n{e}");
        return o;
    }
}
