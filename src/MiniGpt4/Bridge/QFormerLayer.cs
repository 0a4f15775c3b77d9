using MiniGpt4.Runtime;
using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MiniGpt4.Bridge;

/// <summary>
/// One Q-Former layer for query-only input: self-attention, cross-attention to the vision tokens (only in
/// layers with <c>layer % cross_attention_freq == 0</c>), then the query feed-forward
/// <c>output_query(GELU(intermediate_query(x)), x)</c>. The text-branch FFN (<c>intermediate</c>/<c>output</c>)
/// does not exist here, as in MiniGPT-4 which deletes it.
/// </summary>
internal sealed class QFormerLayer : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly QFormerAttention attention;
    private readonly QFormerAttention? crossattention;
    private readonly QFormerIntermediate intermediate_query;
    private readonly QFormerSelfOutput output_query;

    public QFormerLayer(QFormerConfig cfg, int index, ScalarType dtype, Device device, LinearWeights weights) : base(nameof(QFormerLayer))
    {
        attention = new QFormerAttention(cfg, cfg.Hidden, dtype, device, weights);
        if (cfg.HasCrossAttention(index)) crossattention = new QFormerAttention(cfg, cfg.EncoderWidth, dtype, device, weights);
        intermediate_query = new QFormerIntermediate(cfg.Hidden, cfg.Intermediate, dtype, device, weights);
        output_query = new QFormerSelfOutput(cfg.Hidden, cfg.Eps, dtype, device, weights, inFeatures: cfg.Intermediate);
        RegisterComponents();
    }

    public override Tensor forward(Tensor queries, Tensor visionTokens)
    {
        var a = attention.call(queries, queries);
        if (crossattention is not null) a = crossattention.call(a, visionTokens);
        return output_query.call(intermediate_query.call(a), a);
    }
}

/// <summary>GELU(dense(x)) with the exact (erf) GELU (BertIntermediate).</summary>
internal sealed class QFormerIntermediate : nn.Module<Tensor, Tensor>
{
    private readonly Linear dense;
    private readonly LinearWeights _weights;

    public QFormerIntermediate(int hidden, int intermediate, ScalarType dtype, Device device, LinearWeights weights) : base(nameof(QFormerIntermediate))
    {
        _weights = weights;
        dense = EmptyInit.Linear(hidden, intermediate, true, dtype, device, weights.WeightDType);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x) => F.gelu(_weights.Linear(x, dense));
}
