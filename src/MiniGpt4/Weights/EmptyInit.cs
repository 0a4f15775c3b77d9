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
    public static Linear Linear(long inFeatures, long outFeatures, bool hasBias, torch.ScalarType dtype, torch.Device? device = null) =>
        torch.nn.Linear(Parameter([outFeatures, inFeatures], dtype, device), hasBias ? Parameter([outFeatures], dtype, device) : null);

    /// <summary>
    /// An embedding table (key <c>weight</c>, shape <c>[num, dim]</c>), uninitialised. Not TorchSharp's
    /// <c>nn.Embedding</c>: its constructor initialises an fp32 table natively, and
    /// <c>Embedding_from_pretrained</c> (0.107) leaves that initialised fp32 tensor registered as the
    /// state_dict's "weight" while forward uses the given one, so a loader would fill the wrong tensor.
    /// </summary>
    public static EmbeddingTable Embedding(long numEmbeddings, long dim, torch.ScalarType dtype, torch.Device? device = null) =>
        new(Parameter([numEmbeddings, dim], dtype, device));

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

/// <summary>A lookup table: <c>forward(ids)</c> = <c>weight[ids]</c>, shape <c>ids.shape + [dim]</c>. State-dict key: <c>weight</c>.</summary>
internal sealed class EmbeddingTable : torch.nn.Module<torch.Tensor, torch.Tensor>
{
    // Field name = state_dict key (registered by RegisterComponents).
    private readonly Parameter weight;

    /// <summary>Wraps <paramref name="weight"/> (<c>[num, dim]</c>).</summary>
    public EmbeddingTable(Parameter weight) : base(nameof(EmbeddingTable))
    {
        if (weight.dim() != 2) throw new ArgumentException("embedding weight must be 2-D", nameof(weight));
        this.weight = weight;
        RegisterComponents();
    }

    /// <summary>The table, <c>[num, dim]</c>.</summary>
    public Parameter Weight => weight;

    /// <summary>Rows of the table for <paramref name="ids"/> (int64 of any shape).</summary>
    public override torch.Tensor forward(torch.Tensor ids)
    {
        using var flat = ids.reshape(-1);
        using var rows = weight.index_select(0, flat);
        return rows.view([.. ids.shape, weight.shape[1]]);
    }
}
