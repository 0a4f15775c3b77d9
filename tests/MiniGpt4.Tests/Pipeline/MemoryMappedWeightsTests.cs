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
}
