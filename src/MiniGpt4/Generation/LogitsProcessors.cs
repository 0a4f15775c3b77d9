using TorchSharp;

namespace MiniGpt4.Generation;

/// <summary>
/// Work on rows of float32 logits: HF 4.30's repetition penalty (min new tokens is in <see cref="Generator"/>),
/// argmax, the finiteness check of a step, and the log-softmax beam search scores with.
/// </summary>
internal static class LogitsProcessors
{
    /// <summary>
    /// <c>RepetitionPenaltyLogitsProcessor</c> over HF's <c>input_ids</c> (<paramref name="bosId"/> plus the
    /// generated ids; each distinct id once): <c>score &lt; 0 ? score * p : score / p</c> in float32.
    /// </summary>
    public static void RepetitionPenalty(Span<float> scores, int bosId, ReadOnlySpan<int> generated, float penalty)
    {
        if (penalty == 1f) return;
        var seen = new HashSet<int>();
        for (int i = -1; i < generated.Length; i++)
        {
            var id = i < 0 ? bosId : generated[i];
            if (!seen.Add(id)) continue;
            var s = scores[id];
            scores[id] = s < 0f ? s * penalty : s / penalty;
        }
    }

    /// <summary>Index of the first maximum (torch.argmax semantics for finite scores).</summary>
    public static int ArgMax(ReadOnlySpan<float> scores)
    {
        int best = 0;
        float bestValue = scores[0];
        for (int i = 1; i < scores.Length; i++)
            if (scores[i] > bestValue) { bestValue = scores[i]; best = i; }
        return best;
    }

    /// <summary>
    /// Throws <see cref="MiniGptNumericsException"/> naming <paramref name="step"/> when a value is NaN or infinite
    /// (NaN weights, an overflow) instead of letting decoding pick a meaningless token.
    /// </summary>
    public static void ThrowIfNotFinite(ReadOnlySpan<float> values, int step)
    {
        // x - x is 0 for finite x and NaN for NaN and ±infinity; one vectorised sum finds any.
        var sum = 0f;
        foreach (var v in values) sum += v - v;
        if (sum != 0f)
            throw new MiniGptNumericsException(
                $"The language model produced non-finite logits at generation step {step} (NaN or infinity): its weights or inputs are broken " +
                "(for example NaN values in a checkpoint, or a float16 overflow).", step);
    }

    /// <summary>Row-wise log-softmax of <paramref name="values"/> (rows × <paramref name="vocabSize"/>) in place, as torch computes it in float32.</summary>
    public static void LogSoftmax(Span<float> values, int vocabSize)
    {
        using var scope = torch.NewDisposeScope();
        using var guard = torch.no_grad();
        var t = torch.tensor(values.ToArray(), [values.Length / vocabSize, vocabSize]);
        Runtime.TensorMath.CopyTo(torch.nn.functional.log_softmax(t, -1), values);
    }
}
