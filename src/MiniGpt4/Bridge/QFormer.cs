using MiniGpt4.Runtime;
using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Bridge;

/// <summary>
/// LAVIS's <c>Qformer</c> (a BertLMHeadModel whose MLM head, word and position embeddings MiniGPT-4 deletes):
/// only <c>bert</c> remains, so the parameter names are <c>bert.embeddings.LayerNorm.*</c> and
/// <c>bert.encoder.layer.N.*</c> as in the BLIP-2 checkpoint.
/// </summary>
internal sealed class QFormer : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly QFormerBert bert;

    public QFormer(QFormerConfig cfg, ScalarType dtype, Device device, LinearWeights weights) : base(nameof(QFormer))
    {
        bert = new QFormerBert(cfg, dtype, device, weights);
        RegisterComponents();
    }

    /// <summary>Query embeddings <c>[B, Q, D]</c> and vision tokens <c>[B, T, encoder width]</c> -> last hidden state <c>[B, Q, D]</c>.</summary>
    public override Tensor forward(Tensor queryEmbeds, Tensor visionTokens) => bert.call(queryEmbeds, visionTokens);
}

/// <summary>
/// The Q-Former BERT: the embeddings' <c>LayerNorm</c> (eps 1e-12) on the query tokens, as query-only input has no
/// word or position embeddings, then the layers.
/// </summary>
internal sealed class QFormerBert : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Sequential embeddings;
    private readonly QFormerEncoder encoder;

    public QFormerBert(QFormerConfig cfg, ScalarType dtype, Device device, LinearWeights weights) : base(nameof(QFormerBert))
    {
        embeddings = nn.Sequential(("LayerNorm", EmptyInit.LayerNorm(cfg.Hidden, cfg.Eps, dtype, device)));
        encoder = new QFormerEncoder(cfg, dtype, device, weights);
        RegisterComponents();
    }

    public override Tensor forward(Tensor queryEmbeds, Tensor visionTokens) => encoder.call(embeddings.call(queryEmbeds), visionTokens);
}

/// <summary>The stack of <see cref="QFormerLayer"/>s (<c>encoder.layer.N</c>).</summary>
internal sealed class QFormerEncoder : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly ModuleList<QFormerLayer> layer;

    public QFormerEncoder(QFormerConfig cfg, ScalarType dtype, Device device, LinearWeights weights) : base(nameof(QFormerEncoder))
    {
        layer = new ModuleList<QFormerLayer>(Enumerable.Range(0, cfg.Layers).Select(i => new QFormerLayer(cfg, i, dtype, device, weights)).ToArray());
        RegisterComponents();
    }

    public override Tensor forward(Tensor hidden, Tensor visionTokens)
    {
        foreach (var l in layer) hidden = l.call(hidden, visionTokens);
        return hidden;
    }
}
