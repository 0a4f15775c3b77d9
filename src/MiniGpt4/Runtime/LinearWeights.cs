using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MiniGpt4.Runtime;

/// <summary>
/// How a model's linear layers (the vision tower's, the Q-Former's) hold their weights: in the compute dtype, or (a
/// bfloat16 model over float16 files that are memory-mapped) as the file's float16 matrices, rounded to bfloat16 into
/// one buffer for each product. The rounding is the one converting while loading does, so the products are the same;
/// the load then copies nothing. Owned by its model, whose products run one at a time.
/// </summary>
internal sealed class LinearWeights : IDisposable
{
    private readonly Bf16Scratch _scratch = new();

    /// <summary>Weights of <paramref name="dtype"/>, or with <paramref name="storedHalf"/> (a bfloat16 CPU model only) float16 as stored.</summary>
    public LinearWeights(ScalarType dtype, Device device, bool storedHalf)
    {
        if (storedHalf && (dtype != ScalarType.BFloat16 || device.type != TorchSharp.DeviceType.CPU))
            throw new ArgumentException($"Float16 weights as stored run in a bfloat16 CPU model, not {dtype} on {device}.", nameof(storedHalf));
        StoredHalf = storedHalf;
        WeightDType = storedHalf ? ScalarType.Float16 : dtype;
    }

    /// <summary>Whether the weights are float16 as stored (rounded for each product).</summary>
    public bool StoredHalf { get; }

    /// <summary>The dtype the linear layers' weights are created in.</summary>
    public ScalarType WeightDType { get; }

    /// <summary><c>x · Wᵀ + b</c> with <paramref name="bias"/> (default: the layer's own).</summary>
    public Tensor Linear(Tensor x, Linear layer, Tensor? bias = null) => F.linear(x, Weight(layer), bias ?? layer.bias);

    private Tensor Weight(Linear layer)
    {
        var w = layer.weight!;
        if (!StoredHalf) return w;
        // Not the shared buffer when autograd records the product: it would keep a buffer the next layer overwrites.
        if (is_grad_enabled()) return HalfRounding.Rounded(w);
        var rounded = _scratch.For(w.shape[0], w.shape[1]);
        HalfRounding.Round(w, rounded);
        return rounded;
    }

    /// <inheritdoc />
    public void Dispose() => _scratch.Dispose();
}
