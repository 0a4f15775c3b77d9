using System.Text.RegularExpressions;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.DependencyInjection;
using MiniGpt4.Tests.Pipeline;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Chat;

/// <summary>The README's code is <see cref="ReadmeSnippets"/>'s, which compiles and runs on the tiny model.</summary>
public class ReadmeSnippetTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    private static readonly string Readme = File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "README.md"));
    private static readonly string Source = File.ReadAllText(Path.Combine(Fixtures.RepoRoot, "tests", "MiniGpt4.Tests", "Chat", "ReadmeSnippets.cs"));

    public static TheoryData<string> Names => new() { "ichatclient", "ichatclient-di", "replay-save-restore" };

    [Theory]
    [MemberData(nameof(Names))]
    public void The_README_block_is_the_compiled_snippet(string name)
    {
        var block = Regex.Match(Readme, $@"<!-- snippet: {Regex.Escape(name)} -->\s*```csharp\n(.*?)```", RegexOptions.Singleline);
        Assert.True(block.Success, $"README.md has no '<!-- snippet: {name} -->' csharp block");
        var region = Regex.Match(Source, $@"// snippet: {Regex.Escape(name)}\n(.*?)\n\s*// end snippet", RegexOptions.Singleline);
        Assert.True(region.Success, $"ReadmeSnippets.cs has no '// snippet: {name}' region");
        var readmeLines = block.Groups[1].Value.TrimEnd().Split('\n');
        var imports = readmeLines.TakeWhile(l => Regex.IsMatch(l, @"^using [\w.]+;$")).ToArray();
        foreach (var import in imports) Assert.Contains(import + "\n", Source);
        Assert.Equal(Dedent(region.Groups[1].Value), string.Join("\n", readmeLines.Skip(imports.Length)).Trim('\n'));
    }

    private static string Dedent(string text)
    {
        var lines = text.Split('\n');
        var indent = lines.Where(l => l.Trim().Length > 0).Min(l => l.Length - l.TrimStart().Length);
        return string.Join("\n", lines.Select(l => l.Length >= indent ? l[indent..] : l.TrimStart())).Trim('\n');
    }

    [SkippableFact]
    public async Task The_IChatClient_snippet_runs()
        => await ReadmeSnippets.IChatClientAsync(tiny.Get("vicuna0"), Oracle.Image("a_gradient_shapes_640x480.png"));

    [SkippableFact]
    public async Task The_replay_and_save_snippet_runs()
    {
        using var dir = new TempDir();
        await ReadmeSnippets.ReplayAndSaveAsync(tiny.Get("vicuna0"), Oracle.Image("a_gradient_shapes_640x480.png"), dir.File("chat.session"));
        Assert.True(new FileInfo(dir.File("chat.session")).Length > 0);
    }

    [Fact]
    public void The_dependency_injection_snippet_registers_a_chat_client()
    {
        var services = new ServiceCollection();
        ReadmeSnippets.AddChatClient(services);
        Assert.Contains(services, d => d.ServiceType == typeof(IChatClient));
        Assert.Contains(services, d => d.ServiceType == typeof(MiniGptPipeline));
    }
}
