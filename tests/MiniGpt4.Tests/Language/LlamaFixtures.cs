using System.Text.Json;
using MiniGpt4.Language;
using MiniGpt4.Tests.Support;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language;

/// <summary>Loads the oracle models and reads reference values.</summary>
internal static class LlamaFixtures
{
    public const string TinyFolder = "oracle/tiny/llama";
    public const string StoriesFolder = "assets/stories260K";

    public static LlamaForCausalLM Load(string relativeFolder, string? file = null, ScalarType dtype = ScalarType.Float32)
    {
        var folder = Fixtures.Require(relativeFolder);
        var path = file is null ? folder : Path.Combine(folder, file);
        return LlamaForCausalLM.Load(path, dtype, CPU);
    }

    public static JsonElement Json(string relative)
    {
        using var doc = JsonDocument.Parse(File.ReadAllText(Fixtures.Require(relative)));
        return doc.RootElement.Clone();
    }

    public static int[] Ints(JsonElement e) => e.EnumerateArray().Select(x => x.GetInt32()).ToArray();

    /// <summary>An oracle .npy as a float32 CPU tensor.</summary>
    public static Tensor Array(string relativeToTiny)
    {
        var npy = Npy.Read(Fixtures.Require(Path.Combine("oracle/tiny", relativeToTiny.StartsWith("tiny/", StringComparison.Ordinal) ? relativeToTiny[5..] : relativeToTiny)));
        return tensor(npy.ToFloat(), npy.Shape);
    }

    public static double MaxAbsDiff(Tensor a, Tensor b)
    {
        using var d = (a.to(ScalarType.Float32) - b.to(ScalarType.Float32)).abs().max();
        return d.item<float>();
    }

    /// <summary>
    /// The fp32 noise bound for re-ordered but equivalent computations (chunked vs one pass):
    /// the oracle's 1e-5 for logits like its own (|logits| &lt;= 13.2), or 16 float32 ulps of the
    /// largest |reference| once that reaches 16 (stories260K's logits reach 19).
    /// </summary>
    public static double Fp32Tolerance(Tensor reference)
    {
        using var maxT = reference.abs().max();
        var max = (double)maxT.item<float>();
        var ulp = max > 0 ? Math.Pow(2, Math.Floor(Math.Log2(max)) - 23) : 0;
        return max < 16 ? 1e-5 : 16 * ulp;
    }

    public static int Argmax(Tensor logitsRow)
    {
        using var i = logitsRow.argmax();
        return (int)i.item<long>();
    }
}
