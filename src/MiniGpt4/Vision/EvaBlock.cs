using MiniGpt4.Runtime;
using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MiniGpt4.Vision;

/// <summary>
/// One pre-norm EVA ViT block without layer scale: x + attn(norm1(x)), then x + mlp(norm2(x)).
/// The residual stream and the LayerNorms are float32; attention and MLP run in the compute dtype
/// (the reference's fp16 convention: only Linear/Conv weights are converted, residuals stay fp32).
/// </summary>
internal sealed class EvaBlock : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly EvaAttention attn;
    private readonly LayerNorm norm2;
    private readonly EvaMlp mlp;

    private readonly ScalarType _dtype;

    public EvaBlock(VisionConfig cfg, ScalarType dtype, Device device, LinearWeights weights) : base(nameof(EvaBlock))
    {
        _dtype = dtype;
        norm1 = EmptyInit.LayerNorm(cfg.Width, cfg.Eps, ScalarType.Float32, device);
        attn = new EvaAttention(cfg.Width, cfg.Heads, dtype, device, weights);
        norm2 = EmptyInit.LayerNorm(cfg.Width, cfg.Eps, ScalarType.Float32, device);
        mlp = new EvaMlp(cfg.Width, cfg.MlpHidden, dtype, device, weights);
        RegisterComponents();
    }

    /// <summary>Float32 residual stream <c>[B, T, W]</c> in, float32 out.</summary>
    public override Tensor forward(Tensor x)
    {
        x = x.Plus(attn.call(norm1.call(x).to(_dtype)).to(ScalarType.Float32));
        return x.Plus(mlp.call(norm2.call(x).to(_dtype)).to(ScalarType.Float32));
    }
}

/// <summary>The block's feed-forward: fc2(GELU(fc1(x))) with the exact (erf) GELU.</summary>
internal sealed class EvaMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly Linear fc2;
    private readonly LinearWeights _weights;

    public EvaMlp(int width, int hidden, ScalarType dtype, Device device, LinearWeights weights) : base(nameof(EvaMlp))
    {
        _weights = weights;
        fc1 = EmptyInit.Linear(width, hidden, true, dtype, device, weights.WeightDType);
        fc2 = EmptyInit.Linear(hidden, width, true, dtype, device, weights.WeightDType);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => _weights.Linear(F.gelu(_weights.Linear(x, fc1)), fc2);
}
