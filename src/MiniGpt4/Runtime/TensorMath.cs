using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Runtime;

/// <summary>
/// Tensor arithmetic without TorchSharp 0.107's temporary <see cref="Scalar"/>s. Its <c>a + b</c> is <c>add(b, 1)</c>,
/// and the implicit <c>Scalar</c> for the 1 is passed to native code by handle with nothing keeping the object alive: a
/// garbage collection at that moment lets its finalizer free the native scalar mid-call, which aborts the process
/// ("INTERNAL ASSERT FAILED at c10/core/Scalar.h"). Measured here: <c>x + x</c> in a loop with a thread forcing
/// collections crashes within seconds; the same loop with a long-lived scalar ran 4.7 million iterations. Model code
/// therefore adds tensors with <see cref="Plus"/>, passes every scalar argument explicitly (also the hidden ones: an
/// addition's alpha, a range's start and step), and keeps each scalar in a local or field for the call.
/// </summary>
internal static class TensorMath
{
    /// <summary>1 (the alpha of a plain addition, a unit step); lives for the whole process and is never disposed.</summary>
    public static readonly Scalar One = 1.ToScalar();

    /// <summary>0 (a range start); lives for the whole process.</summary>
    public static readonly Scalar Zero = 0.ToScalar();

    /// <summary><c>a + b</c> (broadcasting), safe from the temporary-scalar race.</summary>
    public static Tensor Plus(this Tensor a, Tensor b) => a.add(b, One);

    /// <summary><c>[start, stop)</c> in unit steps with every scalar explicit (TorchSharp's shorter overloads create temporaries).</summary>
    public static Tensor Range(Scalar start, Scalar stop, ScalarType dtype, Device device) => arange(start, stop, One, dtype: dtype, device: device);

    /// <summary><c>x * x</c> element-wise (TorchSharp's <c>square()</c> is <c>pow(2)</c>, with a temporary scalar).</summary>
    public static Tensor Squared(this Tensor x) => x.mul(x);

    /// <summary>
    /// The address of a contiguous CPU tensor's first element (storage offset included). TorchSharp's <c>bytes</c>
    /// spans the native memory but its length is an <c>int</c>, so it is taken from a one-element view, which works
    /// for tensors over 2 GiB too. Valid while the tensor's storage lives and is not reallocated.
    /// </summary>
    public static unsafe nint Address(Tensor t)
    {
        using var flat = t.view(-1);
        using var first = flat.narrow(0, 0, 1);
        return (nint)System.Runtime.CompilerServices.Unsafe.AsPointer(ref System.Runtime.InteropServices.MemoryMarshal.GetReference(first.bytes));
    }

    /// <summary>
    /// Copies <paramref name="t"/>'s values as float32 into <paramref name="destination"/>, which must have exactly
    /// as many elements (converted and moved to the CPU first when needed; one memcpy out of the native buffer).
    /// </summary>
    public static void CopyTo(this Tensor t, Span<float> destination)
    {
        if (t.numel() != destination.Length)
            throw new InvalidOperationException($"The model returned a tensor of shape [{string.Join(", ", t.shape)}]; {destination.Length} values were expected.");
        using var scope = NewDisposeScope();
        var flat = t.to(ScalarType.Float32).cpu().contiguous();
        System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(flat.bytes).CopyTo(destination);
    }
}
