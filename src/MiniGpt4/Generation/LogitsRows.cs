using TorchSharp;

namespace MiniGpt4.Generation;

/// <summary>Checks of a step's logits, and the log-softmax beam search scores them with.</summary>
internal static class LogitsRows
{
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
