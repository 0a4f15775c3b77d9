using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>
/// On the CPU, weights whose dtype equals the file's are views of a private memory map of the file (the process maps
/// the weight file), unless <see cref="MiniGptLoadOptions.MemoryMapWeights"/> is off; the answers are the same.
/// </summary>
public class MemoryMappedWeightsTests
{
    private static int Mappings(string path) =>
        File.ReadLines("/proc/self/maps").Count(l => l.EndsWith(" " + Path.GetFullPath(path), StringComparison.Ordinal));

    [SkippableFact]
    public async Task Mapped_and_copied_weights_give_the_reference_answer_and_only_the_mapped_ones_map_the_file()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/maps");
        var manifest = Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json");
        var llmFile = Fixtures.Require("oracle/tiny/llama/model.safetensors");
        foreach (var map in new[] { false, true })
        {
            var before = Mappings(llmFile); // other tests' models may map it too
            var options = TinyPipelines.Float32Exact with { MemoryMapWeights = map };
            using (var p = await MiniGptPipeline.LoadAsync(manifest, options))
            {
                Assert.Equal(map, Mappings(llmFile) > before);
                var r = await p.AskAsync(OracleChat.ImageA, OracleChat.Question, OracleChat.Greedy20);
                Assert.Equal(OracleChat.ReferenceIds(), r.TokenIds);
            }
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Assert.True(Mappings(llmFile) <= before, "the mapping outlived the disposed pipeline");
        }
    }

    /// <summary>Resident kilobytes of this process's mappings of <paramref name="path"/>, by mapping start address.</summary>
    private static Dictionary<string, long> ResidentKb(string path)
    {
        var full = " " + Path.GetFullPath(path);
        var result = new Dictionary<string, long>();
        string? current = null;
        foreach (var line in File.ReadLines("/proc/self/smaps"))
        {
            if (line.Length > 0 && char.IsAsciiHexDigit(line[0]) && line.Contains('-'))
                current = line.EndsWith(full, StringComparison.Ordinal) ? line[..line.IndexOf('-')] : null;
            else if (current is not null && line.StartsWith("Rss:", StringComparison.Ordinal))
                result[current] = long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]);
        }
        return result;
    }

    [SkippableFact]
    public async Task Prefaulted_weights_are_resident_when_the_load_returns_and_answer_the_same()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "reads /proc/self/smaps");
        var manifest = Fixtures.Require("oracle/tiny/minigpt4-vicuna0.json");
        var llmFile = Fixtures.Require("oracle/tiny/llama/model.safetensors");
        var before = ResidentKb(llmFile).Keys.ToHashSet();
        using var p = await MiniGptPipeline.LoadAsync(manifest, TinyPipelines.Float32Exact with { PrefaultWeights = true });
        var mine = ResidentKb(llmFile).Where(m => !before.Contains(m.Key)).ToList();
        Assert.NotEmpty(mine);
        // Every page of the tensor data is in this process's page table once the load returns (the header may be too).
        var dataKb = (new FileInfo(llmFile).Length - 4096) / 1024;
        Assert.True(mine.Sum(m => m.Value) >= dataKb, $"resident {mine.Sum(m => m.Value)} KB of about {dataKb} KB of tensor data");
        var r = await p.AskAsync(OracleChat.ImageA, OracleChat.Question, OracleChat.Greedy20);
        Assert.Equal(OracleChat.ReferenceIds(), r.TokenIds);
    }
}
