using TorchSharp;

namespace MiniGpt4.Tests.Support;

/// <summary>Copies between tensors, float arrays and .npy data.</summary>
public static class Tensors
{
    /// <summary>An .npy array as a float32 CPU tensor of its shape.</summary>
    public static torch.Tensor FromNpy(NpyArray npy) => torch.tensor(npy.ToFloat(), npy.Shape);

    /// <summary>The values of <paramref name="t"/> (any dtype, any device) as float32, in C order.</summary>
    public static float[] ToFloats(torch.Tensor t)
    {
        using var f = t.detach().to(torch.ScalarType.Float32).cpu().contiguous();
        return f.data<float>().ToArray();
    }
}
