using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MiniGpt4.Vision;

/// <summary>One pre-norm EVA ViT block without layer scale: x + attn(norm1(x)), then x + mlp(norm2(x)).</summary>
internal sealed class EvaBlock : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm norm1;
    private readonly EvaAttention attn;
    private readonly LayerNorm norm2;
    private readonly EvaMlp mlp;

    public EvaBlock(VisionConfig cfg, ScalarType dtype, Device device) : base(nameof(EvaBlock))
    {
        norm1 = EmptyInit.LayerNorm(cfg.Width, cfg.Eps, dtype, device);
        attn = new EvaAttention(cfg.Width, cfg.Heads, dtype, device);
        norm2 = EmptyInit.LayerNorm(cfg.Width, cfg.Eps, dtype, device);
        mlp = new EvaMlp(cfg.Width, cfg.MlpHidden, dtype, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        x = x + attn.call(norm1.call(x));
        return x + mlp.call(norm2.call(x));
    }
}

/// <summary>The block's feed-forward: fc2(GELU(fc1(x))) with the exact (erf) GELU.</summary>
internal sealed class EvaMlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly Linear fc2;

    public EvaMlp(int width, int hidden, ScalarType dtype, Device device) : base(nameof(EvaMlp))
    {
        fc1 = EmptyInit.Linear(width, hidden, true, dtype, device);
        fc2 = EmptyInit.Linear(hidden, width, true, dtype, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => fc2.call(F.gelu(fc1.call(x)));
}
