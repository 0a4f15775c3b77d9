using TorchSharp;
using TorchSharp.Modules;

namespace MiniGpt4.Weights;

/// <summary>
/// Layers whose parameters are allocated but NOT initialised (<c>torch.empty</c>), for models that are
/// filled by <see cref="ModuleLoader"/> right after construction. TorchSharp's <c>nn.Linear</c> runs
/// kaiming init (touching every page: seconds and the full weight bytes for a 7B model, in fp32 for
/// <c>nn.Embedding</c>) and <c>nn.Embedding</c> initialises in fp32 then converts; these helpers allocate
/// exactly once, in the target dtype and device, and the untouched pages cost no resident memory
/// until the loader writes them. Parameters are created with <c>requires_grad = false</c> (inference).
/// Every value is garbage until loaded: use only for modules that are loaded strictly.
/// </summary>
internal static class EmptyInit
{
    /// <summary>An uninitialised parameter of <paramref name="shape"/>.</summary>
    public static Parameter Parameter(long[] shape, torch.ScalarType dtype, torch.Device? device = null) =>
        new(torch.empty(shape, dtype, device ?? torch.CPU), requires_grad: false);

    /// <summary><c>nn.Linear(inFeatures, outFeatures, hasBias)</c>, weight <c>[out, in]</c>, uninitialised.</summary>
    public static Linear Linear(long inFeatures, long outFeatures, bool hasBias, torch.ScalarType dtype, torch.Device? device = null) =>
        torch.nn.Linear(Parameter([outFeatures, inFeatures], dtype, device), hasBias ? Parameter([outFeatures], dtype, device) : null);

    /// <summary><c>nn.Embedding(numEmbeddings, dim)</c>, weight <c>[num, dim]</c>, uninitialised (no padding index, frozen).</summary>
    public static Embedding Embedding(long numEmbeddings, long dim, torch.ScalarType dtype, torch.Device? device = null)
    {
        using var weight = torch.empty([numEmbeddings, dim], dtype, device ?? torch.CPU);
        return torch.nn.Embedding_from_pretrained(weight, freeze: true);
    }

    /// <summary><c>nn.LayerNorm(dim, eps)</c> in <paramref name="dtype"/> (its ones/zeros init is tiny, so it is kept).</summary>
    public static LayerNorm LayerNorm(long dim, double eps, torch.ScalarType dtype, torch.Device? device = null, bool bias = true) =>
        torch.nn.LayerNorm(dim, eps, elementwise_affine: true, bias: bias, device: device, dtype: dtype);

    /// <summary><c>nn.Conv2d</c> with square kernel and stride (EVA's patch embedding), parameters replaced by uninitialised ones.</summary>
    public static Conv2d Conv2d(long inChannels, long outChannels, long kernelSize, long stride, bool hasBias, torch.ScalarType dtype, torch.Device? device = null)
    {
        var conv = torch.nn.Conv2d(inChannels, outChannels, kernelSize, stride: stride, bias: hasBias, device: torch.META);
        conv.weight = Parameter([outChannels, inChannels, kernelSize, kernelSize], dtype, device);
        if (hasBias) conv.bias = Parameter([outChannels], dtype, device);
        return conv;
    }
}
