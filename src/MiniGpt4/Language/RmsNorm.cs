using MiniGpt4.Runtime;
using MiniGpt4.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>
/// LLaMA's RMSNorm as transformers 4.30 computes it: statistics in float32,
/// <c>y = w ⊙ cast(x₃₂ · rsqrt(mean(x₃₂²) + eps))</c>, the cast going to the weight's dtype when
/// that is a half type (so an fp32 activation with bf16 weights also ends in bf16). A float64
/// activation is normalised in float64 (4.30 would round its statistics to float32; float64 exists
/// here for exactness checks, gradient checks by finite differences among them).
/// </summary>
internal sealed class RmsNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly double _eps;

    public RmsNorm(string name, long size, double eps, ScalarType dtype, Device device) : base(name)
    {
        weight = EmptyInit.Parameter([size], dtype, device);
        _eps = eps;
        RegisterComponents();
    }

    /// <summary>The scale <c>[size]</c>.</summary>
    internal Tensor Weight => weight;

    /// <summary>The epsilon added to the mean square.</summary>
    internal double Eps => _eps;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var wide = x.dtype == ScalarType.Float64 ? x : x.to(ScalarType.Float32);
        // No temporary Scalars (x.pow(2), + eps; eps is held in a local for the call): see TensorMath. Added
        // out of place: the differentiable forward writes nothing in place.
        using var eps = _eps.ToScalar();
        var normed = wide * rsqrt(wide.Squared().mean([-1L], keepdim: true).add(eps, TensorMath.One));
        if (weight.dtype is ScalarType.BFloat16 or ScalarType.Float16) normed = normed.to(weight.dtype);
        return (weight * normed).MoveToOuterDisposeScope();
    }
}
