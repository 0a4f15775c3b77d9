using MiniGpt4.Language;
using static TorchSharp.torch;

namespace MiniGpt4.Benchmarks.Language;

/// <summary>Random-weight LLaMA models and filled caches shared by the decode benchmarks.</summary>
internal static class BenchModels
{
    /// <summary>Vicuna-7B's layer shape with <paramref name="layers"/> blocks (the shape the CLI's synth writes for preset vicuna-7b).</summary>
    public static LlamaConfig SevenBShape(int layers = 1)
    {
        var s = MiniGpt4.Cli.Synth.SynthPreset.Vicuna7B;
        return new(s.Hidden, s.Intermediate, layers, s.Heads, s.KvHeads, s.RmsNormEps, s.RopeTheta, s.MaxPositions, s.Vocab, TieWordEmbeddings: false);
    }

    /// <summary>A model with N(0, 0.02) weights and unit norms (seeded, so every run reads the same bytes).</summary>
    public static LlamaForCausalLM RandomLlama(LlamaConfig config, ScalarType dtype, ulong seed = 42)
    {
        var lm = new LlamaForCausalLM(config, dtype, CPU);
        using (no_grad())
        using (var g = new Generator(seed))
        {
            foreach (var (name, p) in lm.named_parameters())
            {
                if (name.EndsWith("norm.weight", StringComparison.Ordinal)) p.fill_(1.0);
                else p.normal_(0, 0.02, generator: g);
            }
        }
        return lm;
    }

    /// <summary>A deterministic prompt of ids spread over the vocabulary.</summary>
    public static int[] Prompt(int tokens) => Enumerable.Range(0, tokens).Select(i => 3 + (i * 7919 % 31000)).ToArray();

    /// <summary>Prefills <paramref name="session"/> with repeats of <paramref name="prompt"/> until it holds <paramref name="context"/> positions.</summary>
    public static void Fill(LlamaSession session, int[] prompt, int context)
    {
        for (var filled = 0; filled < context; filled += prompt.Length) session.PrefillTokens(prompt).Dispose();
    }
}
