using MiniGpt4.Language;
using MiniGpt4.Tests.Support;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language;

/// <summary>Loads the oracle's language models; the fp32 noise bound and greedy pick the decoder tests share.</summary>
internal static class LlamaFixtures
{
    public const string TinyFolder = "oracle/tiny/llama";
    public const string StoriesFolder = "assets/stories260K";

    /// <summary>The logits of a prefill of <paramref name="prompt"/> and <paramref name="steps"/> greedy decode steps, flattened (float32).</summary>
    public static float[] PrefillAndGreedyLogits(LlamaForCausalLM lm, int[] prompt, int steps)
    {
        using var session = lm.CreateSession(64);
        var all = new List<float>();
        var logits = session.PrefillTokens(prompt);
        for (var i = 0; i < steps; i++)
        {
            using (var f = logits.to(ScalarType.Float32)) all.AddRange(f.data<float>().ToArray());
            var token = Argmax(logits[0]);
            logits.Dispose();
            logits = session.Step([token]);
        }
        logits.Dispose();
        return [.. all];
    }

    public static LlamaForCausalLM Load(string relativeFolder, string? file = null, ScalarType dtype = ScalarType.Float32)
    {
        var folder = Fixtures.Require(relativeFolder);
        var path = file is null ? folder : Path.Combine(folder, file);
        return LlamaForCausalLM.Load(path, dtype, CPU);
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

    /// <summary>Greedy decoding: prefills <paramref name="prompt"/>, then feeds back the argmax <paramref name="count"/> times; returns the picked ids.</summary>
    public static List<int> Greedy(LlamaSession session, int[] prompt, int count)
    {
        var generated = new List<int>();
        var logits = session.PrefillTokens(prompt);
        while (generated.Count < count)
        {
            var token = Argmax(logits[0]);
            logits.Dispose();
            generated.Add(token);
            logits = session.Step([token]);
        }
        logits.Dispose();
        return generated;
    }
}
