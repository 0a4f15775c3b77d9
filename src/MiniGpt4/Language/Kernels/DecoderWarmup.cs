using System.Collections.Concurrent;
using MiniGpt4.Language.Quantization;
using static TorchSharp.torch;

namespace MiniGpt4.Language.Kernels;

/// <summary>
/// Runs a tiny model of the same dtype and weight format through a prefill and some decode steps, once per process and
/// kind of model, when a model is loaded: so a user's first answer does not pay the just-in-time compilation of the
/// decode path (20–30 ms here, the time of a hundred tokens of a small model) and the softmax's vector exponential
/// (tiered code from the runtime library) has been called often enough to be optimised.
/// </summary>
internal static class DecoderWarmup
{
    private static readonly ConcurrentDictionary<(ScalarType, QuantFormat, QuantFormat), bool> Done = new();

    /// <summary>Steps of the tiny model: enough calls of each decode method for the runtime to optimise what it tiers.</summary>
    private const int Steps = 40;

    /// <summary>The tiny model: widths that every weight format accepts, a head of 128 values like the real models'.</summary>
    internal static readonly LlamaConfig Config = new(HiddenSize: 512, IntermediateSize: 512, NumHiddenLayers: 1, NumAttentionHeads: 4,
        NumKeyValueHeads: 4, RmsNormEps: 1e-6, RopeTheta: 10000, MaxPositionEmbeddings: Steps + 8, VocabSize: 64, TieWordEmbeddings: false);

    /// <summary>
    /// Warms the decode path <paramref name="lm"/> will use, unless it does not use the CPU decoder or a model of its kind
    /// was warmed in this process; true when it ran.
    /// </summary>
    public static bool Run(LlamaForCausalLM lm)
    {
        if (lm.Decoder is null) return false;
        var q = lm.Quantization;
        if (!Done.TryAdd((lm.DType, q?.Blocks ?? QuantFormat.None, q?.Head ?? QuantFormat.None), true)) return false;
        Warm(lm.DType, q);
        return true;
    }

    /// <summary>A prefill and <see cref="Steps"/> decode steps of a tiny zero-weight model of <paramref name="dtype"/> and <paramref name="quantization"/>.</summary>
    public static void Warm(ScalarType dtype, LlamaQuantization? quantization)
    {
        using var scope = NewDisposeScope();
        using var tiny = new LlamaForCausalLM(Config, dtype, CPU, quantization);
        using (no_grad())
            foreach (var t in tiny.parameters().Concat(tiny.buffers())) t.zero_(); // zero weights: finite, defined numbers
        using var session = tiny.CreateSession(Steps + 4);
        session.PrefillTokens([1, 2]).Dispose();
        var logits = new float[Config.VocabSize];
        for (var i = 0; i < Steps; i++) session.Step([3], logits);
    }
}
