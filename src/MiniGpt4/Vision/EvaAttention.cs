using MiniGpt4.Runtime;
using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MiniGpt4.Vision;

/// <summary>
/// EVA/BEiT self-attention: one fused qkv projection without bias plus separate <c>q_bias</c> and
/// <c>v_bias</c> (the key has no bias, so the bias used is cat(q_bias, 0, v_bias)); scores scaled by
/// head_dim^-0.5; no mask, no relative position bias.
/// </summary>
internal sealed class EvaAttention : nn.Module<Tensor, Tensor>
{
    private readonly Linear qkv;
    private readonly Parameter q_bias;
    private readonly Parameter v_bias;
    private readonly Linear proj;
    private readonly int _heads;
    private readonly LinearWeights _weights;

    public EvaAttention(int width, int heads, ScalarType dtype, Device device, LinearWeights weights) : base(nameof(EvaAttention))
    {
        _heads = heads;
        _weights = weights;
        qkv = EmptyInit.Linear(width, 3L * width, hasBias: false, dtype, device, weights.WeightDType);
        q_bias = EmptyInit.Parameter([width], dtype, device);
        v_bias = EmptyInit.Parameter([width], dtype, device);
        proj = EmptyInit.Linear(width, width, true, dtype, device, weights.WeightDType);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], t = x.shape[1], c = x.shape[2];
        var bias = cat([q_bias, zeros_like(v_bias), v_bias]);
        // [B,T,3C] -> [3,B,H,T,hd]: the 3C outputs are the q, k and v blocks, each head-major.
        var qkvHeads = _weights.Linear(x, qkv, bias).view(b, t, 3, _heads, c / _heads).permute(2, 0, 3, 1, 4);
        var o = F.scaled_dot_product_attention(qkvHeads[0], qkvHeads[1], qkvHeads[2]); // softmax(q k^T / sqrt(hd)) v
        return _weights.Linear(o.transpose(1, 2).reshape(b, t, c), proj);
    }
}
