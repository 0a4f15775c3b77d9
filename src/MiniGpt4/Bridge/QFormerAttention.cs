using MiniGpt4.Runtime;
using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MiniGpt4.Bridge;

/// <summary>
/// BERT attention block of the Q-Former (<c>attention</c> or <c>crossattention</c>): multi-head attention
/// from the hidden states to <c>context</c> (itself for self-attention, the vision tokens for cross-attention),
/// then the post-norm output <c>LayerNorm(dense(ctx) + hidden)</c>. No masks: all of MiniGPT-4's masks are ones.
/// </summary>
internal sealed class QFormerAttention : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly QFormerSelfAttention self;
    private readonly QFormerSelfOutput output;

    public QFormerAttention(QFormerConfig cfg, int contextWidth, ScalarType dtype, Device device, LinearWeights weights) : base(nameof(QFormerAttention))
    {
        self = new QFormerSelfAttention(cfg.Hidden, contextWidth, cfg.Heads, dtype, device, weights);
        output = new QFormerSelfOutput(cfg.Hidden, cfg.Eps, dtype, device, weights);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor context) => output.call(self.call(hidden, context), hidden);
}

/// <summary>Query/key/value projections and scaled dot-product attention (scale 1/sqrt(head_dim)).</summary>
internal sealed class QFormerSelfAttention : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear query;
    private readonly Linear key;
    private readonly Linear value;
    private readonly int _heads;
    private readonly LinearWeights _weights;

    public QFormerSelfAttention(int hidden, int contextWidth, int heads, ScalarType dtype, Device device, LinearWeights weights) : base(nameof(QFormerSelfAttention))
    {
        _heads = heads;
        _weights = weights;
        query = EmptyInit.Linear(hidden, hidden, true, dtype, device, weights.WeightDType);
        key = EmptyInit.Linear(contextWidth, hidden, true, dtype, device, weights.WeightDType);
        value = EmptyInit.Linear(contextWidth, hidden, true, dtype, device, weights.WeightDType);
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor context)
    {
        var q = SplitHeads(_weights.Linear(hidden, query));
        var k = SplitHeads(_weights.Linear(context, key));
        var v = SplitHeads(_weights.Linear(context, value));
        var o = F.scaled_dot_product_attention(q, k, v);
        return o.transpose(1, 2).flatten(2);
    }

    private Tensor SplitHeads(Tensor x) => x.view(x.shape[0], x.shape[1], _heads, x.shape[2] / _heads).transpose(1, 2);
}

/// <summary>Post-norm residual output: <c>LayerNorm(dense(x) + residual)</c> (BertSelfOutput / BertOutput).</summary>
internal sealed class QFormerSelfOutput : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear dense;
    private readonly LayerNorm LayerNorm;
    private readonly LinearWeights _weights;

    public QFormerSelfOutput(int hidden, double eps, ScalarType dtype, Device device, LinearWeights weights, int inFeatures = 0) : base(nameof(QFormerSelfOutput))
    {
        _weights = weights;
        dense = EmptyInit.Linear(inFeatures > 0 ? inFeatures : hidden, hidden, true, dtype, device, weights.WeightDType);
        LayerNorm = EmptyInit.LayerNorm(hidden, eps, dtype, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor residual) => LayerNorm.call(_weights.Linear(x, dense).Plus(residual));
}
