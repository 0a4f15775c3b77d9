using TorchSharp;
using TorchSharp.Modules;

namespace MiniGpt4.Weights;

/// <summary>
/// Layers whose parameters are allocated but NOT initialised (<c>torch.empty</c>), for models that
/// <see cref="ModuleLoader"/> fills right after construction: TorchSharp's <c>nn.Linear</c> runs kaiming
/// init, touching every page (seconds and the full weight bytes for a 7B model). These allocate once, in
/// the target dtype and device, with <c>requires_grad = false</c>; untouched pages cost no resident memory
/// until the loader writes them. Every value is garbage until loaded: use only for modules loaded strictly.
/// </summary>
internal static class EmptyInit
{
    /// <summary>
    /// An uninitialised parameter of <paramref name="shape"/>, detached from any dispose scope open on the
    /// calling thread, so the module that registers it owns it even when built inside a caller's scope.
    /// </summary>
    public static Parameter Parameter(long[] shape, torch.ScalarType dtype, torch.Device? device = null)
    {
        // The Parameter gets its own native handle on the same storage: free the temporary one, or it
        // stays alive after the module is disposed (until a finalizer runs).
        using var data = torch.empty(shape, dtype, device ?? torch.CPU);
        var p = new Parameter(data, requires_grad: false);
        p.DetachFromDisposeScope();
        return p;
    }

    /// <summary><c>nn.Linear(inFeatures, outFeatures, hasBias)</c>, weight <c>[out, in]</c>, uninitialised.</summary>
    public static Linear Linear(long inFeatures, long outFeatures, bool hasBias, torch.ScalarType dtype, torch.Device? device = null,
        torch.ScalarType? weightDType = null) =>
        torch.nn.Linear(Parameter([outFeatures, inFeatures], weightDType ?? dtype, device), hasBias ? Parameter([outFeatures], dtype, device) : null);

    /// <summary><c>nn.LayerNorm(dim, eps)</c> in <paramref name="dtype"/> (its ones/zeros init is tiny, so it is kept).</summary>
    public static LayerNorm LayerNorm(long dim, double eps, torch.ScalarType dtype, torch.Device? device = null) =>
        torch.nn.LayerNorm(dim, eps, device: device, dtype: dtype);

    /// <summary><c>nn.Conv2d</c> with square kernel and stride (EVA's patch embedding), parameters replaced by uninitialised ones.</summary>
    public static Conv2d Conv2d(long inChannels, long outChannels, long kernelSize, long stride, bool hasBias, torch.ScalarType dtype, torch.Device? device = null)
    {
        var conv = torch.nn.Conv2d(inChannels, outChannels, kernelSize, stride: stride, bias: hasBias, device: torch.META);
        conv.weight = Parameter([outChannels, inChannels, kernelSize, kernelSize], dtype, device);
        if (hasBias) conv.bias = Parameter([outChannels], dtype, device);
        return conv;
    }
}
