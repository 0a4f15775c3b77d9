using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MiniGpt4.Bridge;

/// <summary>
/// <c>ln_vision</c>: LayerNorm over the ViT width (eps 1e-5), parameters kept in float32 and computed in
/// float32 whatever the model dtype (the reference's fp16-safe LayerNorm wrapper), result cast back to the
/// input dtype. Starts as weight 1 / bias 0, which is what the Llama-2 and MiniGPT-v2 variants use (no file
/// holds it); the Q-Former variant loads it from the BLIP-2 checkpoint.
/// </summary>
internal sealed class VisionLayerNorm : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;
    private readonly Parameter bias;
    private readonly long[] _shape;

    public VisionLayerNorm(int width, Device device, double eps = 1e-5) : base(nameof(VisionLayerNorm))
    {
        _shape = [width];
        Eps = eps;
        weight = new Parameter(ones(width, ScalarType.Float32, device), requires_grad: false);
        bias = new Parameter(zeros(width, ScalarType.Float32, device), requires_grad: false);
        RegisterComponents();
    }

    /// <summary>The LayerNorm epsilon.</summary>
    public double Eps { get; }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        return F.layer_norm(x.to(ScalarType.Float32), _shape, weight, bias, Eps).to(x.dtype).MoveToOuterDisposeScope();
    }
}
