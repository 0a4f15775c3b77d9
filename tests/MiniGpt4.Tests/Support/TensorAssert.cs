using TorchSharp;
using Xunit;

namespace MiniGpt4.Tests.Support;

/// <summary>Bit-exact tensor comparison.</summary>
public static class TensorAssert
{
    /// <summary>Same dtype, same shape, bit-identical bytes.</summary>
    public static bool BitEqual(torch.Tensor a, torch.Tensor b)
    {
        if (a.dtype != b.dtype || !a.shape.SequenceEqual(b.shape)) return false;
        using var ca = a.cpu().contiguous();
        using var cb = b.cpu().contiguous();
        return ca.bytes.SequenceEqual(cb.bytes);
    }

    /// <summary>Asserts <see cref="BitEqual"/>, naming <paramref name="what"/> and both dtypes and shapes when it fails.</summary>
    public static void Equal(torch.Tensor expected, torch.Tensor actual, string? what = null) =>
        Assert.True(BitEqual(expected, actual), $"{what}: tensors differ ({expected.dtype} {string.Join(",", expected.shape)} vs {actual.dtype} {string.Join(",", actual.shape)})");
}
