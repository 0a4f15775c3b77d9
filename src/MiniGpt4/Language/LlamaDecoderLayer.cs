using MiniGpt4.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>One pre-norm decoder block: <c>h = x + attn(norm(x))</c>, <c>out = h + mlp(norm(h))</c>.</summary>
internal sealed class LlamaDecoderLayer : nn.Module
{
    private readonly LlamaAttention self_attn;
    private readonly LlamaMlp mlp;
    private readonly RmsNorm input_layernorm, post_attention_layernorm;

    public LlamaDecoderLayer(string name, LlamaConfig config, ScalarType dtype, Device device, Quantization.QuantFormat quant = Quantization.QuantFormat.None) : base(name)
    {
        self_attn = new LlamaAttention(config, dtype, device, quant);
        mlp = new LlamaMlp(config, dtype, device, quant);
        input_layernorm = new RmsNorm("input_layernorm", config.HiddenSize, config.RmsNormEps, dtype, device);
        post_attention_layernorm = new RmsNorm("post_attention_layernorm", config.HiddenSize, config.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    internal LlamaAttention SelfAttn => self_attn;
    internal LlamaMlp Mlp => mlp;
    internal RmsNorm InputLayerNorm => input_layernorm;
    internal RmsNorm PostAttentionLayerNorm => post_attention_layernorm;

    /// <summary>Runs the block on <paramref name="x"/> <c>[B, T, H]</c> over a KV cache; see <see cref="LlamaAttention.Forward(Tensor, Tensor, Tensor, Tensor, Tensor, long, Tensor?)"/>.</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor cacheK, Tensor cacheV, long start, Tensor? mask)
        => Block(x, normed => self_attn.Forward(normed, cos, sin, cacheK, cacheV, start, mask));

    /// <summary>Runs the block on a whole sequence <paramref name="x"/> <c>[B, T, H]</c> without a cache; see <see cref="LlamaAttention.Forward(Tensor, Tensor, Tensor, Tensor)"/>.</summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor mask)
        => Block(x, normed => self_attn.Forward(normed, cos, sin, mask));

    private Tensor Block(Tensor x, Func<Tensor, Tensor> attention)
    {
        using var scope = NewDisposeScope();
        var h = x.Plus(attention(input_layernorm.call(x)));
        return h.Plus(mlp.call(post_attention_layernorm.call(h))).MoveToOuterDisposeScope();
    }
}
