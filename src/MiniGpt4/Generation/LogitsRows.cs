using TorchSharp;

namespace MiniGpt4.Generation;

/// <summary>Copies a stepper's <c>[rows, V]</c> logits into a managed buffer (one copy per step).</summary>
internal static class LogitsRows
{
    /// <summary>
    /// Checks the shape and copies row-major float32 values into <paramref name="destination"/>
    /// (rows * V). Converts a non-float32 or non-CPU tensor first, so a model that breaks the
    /// CPU/float32 contract still works, only slower. Non-finite values (NaN weights, an overflow) raise
    /// <see cref="MiniGptNumericsException"/> naming <paramref name="step"/> instead of picking a meaningless token.
    /// </summary>
    public static void CopyTo(torch.Tensor logits, int rows, int vocabSize, float[] destination, int step, bool logSoftmax = false)
    {
        var shape = logits.shape;
        bool ok = shape.Length == 2 && shape[0] == rows && shape[1] == vocabSize;
        if (!ok && shape.Length == 3 && shape[0] == rows && shape[1] == 1 && shape[2] == vocabSize) ok = true;
        if (!ok)
            throw new InvalidOperationException(
                $"The model returned logits of shape [{string.Join(", ", shape)}]; expected [{rows}, {vocabSize}].");
        using var scope = torch.NewDisposeScope();
        var t = logits.reshape(rows, vocabSize);
        if (t.dtype != torch.float32) t = t.to(torch.float32);
        if (logSoftmax) t = torch.nn.functional.log_softmax(t, -1);
        if (t.device_type != DeviceType.CPU) t = t.cpu();
        t = t.contiguous();
        // one memcpy out of the native buffer (TensorAccessor.CopyTo walks element by element)
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(t.bytes).CopyTo(destination);
        var values = destination.AsSpan(0, rows * vocabSize);
        if (!AllFinite(values))
            throw new MiniGptNumericsException(
                $"The language model produced non-finite logits at generation step {step} (NaN or infinity): its weights or inputs are broken " +
                "(for example NaN values in a checkpoint, or a float16 overflow).", step);
    }

    private static bool AllFinite(ReadOnlySpan<float> values)
    {
        // x - x is 0 for finite x and NaN for NaN and ±infinity; one vectorised sum finds any.
        var sum = 0f;
        foreach (var v in values) sum += v - v;
        return sum == 0f;
    }
}
