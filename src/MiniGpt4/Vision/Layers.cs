using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Vision;

/// <summary>
/// Layer factories that allocate uninitialised parameters directly on the target device and dtype:
/// every parameter is overwritten by the weight loader, so the random initialisation TorchSharp's
/// own constructors run (a billion values for EVA-ViT-g) would be wasted time.
/// </summary>
internal static class Layers
{
    /// <summary>A Linear layer <c>[outFeatures, inFeatures]</c> with uninitialised weights.</summary>
    public static Linear Linear(long inFeatures, long outFeatures, bool bias, ScalarType dtype, Device device)
        => nn.Linear(Empty(dtype, device, outFeatures, inFeatures), bias ? Empty(dtype, device, outFeatures) : null);

    /// <summary>A LayerNorm over the last dimension (weight 1, bias 0 until loaded).</summary>
    public static LayerNorm LayerNorm(long dim, double eps, ScalarType dtype, Device device)
        => nn.LayerNorm(dim, eps, device: device, dtype: dtype);

    /// <summary>An uninitialised parameter of the given shape.</summary>
    public static Parameter Empty(ScalarType dtype, Device device, params long[] shape)
        => new(empty(shape, dtype: dtype, device: device), requires_grad: false);
}
