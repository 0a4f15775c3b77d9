using MiniGpt4.Runtime;
using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Bridge;

/// <summary>
/// The MiniGPT-4 (Vicuna v0) bridge: ln_vision -> Q-Former (learned queries cross-attending to all ViT tokens)
/// -> <c>llama_proj</c>. Parameter names equal the assembled MiniGPT-4 model's (<c>ln_vision.*</c>,
/// <c>query_tokens</c>, <c>Qformer.bert.*</c>, <c>llama_proj.*</c>), so the BLIP-2 and stage-2 checkpoints map 1:1.
/// </summary>
internal sealed class QFormerProjector : ProjectorModule
{
    private readonly Parameter query_tokens;
    private readonly QFormer Qformer;
    private readonly LinearWeights _weights;

    /// <summary>
    /// An uninitialised bridge; with <paramref name="storedHalf"/> (bfloat16 on the CPU) the Q-Former's linear weights
    /// are float16, to be shared with a memory-mapped file (<see cref="LinearWeights"/>).
    /// </summary>
    public QFormerProjector(QFormerConfig config, int outputDim, ScalarType dtype, Device device, bool storedHalf = false)
        : base(nameof(QFormerProjector), config.EncoderWidth, config.Hidden, outputDim, dtype, device)
    {
        TokensPerImage = config.NumQueryTokens;
        _weights = new LinearWeights(dtype, device, storedHalf);
        query_tokens = EmptyInit.Parameter([1, config.NumQueryTokens, config.Hidden], dtype, device);
        Qformer = new QFormer(config, dtype, device, _weights);
        RegisterComponents();
    }

    /// <summary>Whether the Q-Former's linear weights are float16 as stored (rounded for each product).</summary>
    public bool StoredHalf => _weights.StoredHalf;

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _weights.Dispose();
        base.Dispose(disposing);
    }

    /// <inheritdoc/>
    public override int TokensPerImage { get; }

    /// <summary>The Q-Former's last hidden state <c>[B, Q, Hidden]</c>.</summary>
    public override Tensor ProjectionInput(Tensor visionTokens)
    {
        var imageEmbeds = LnVision(visionTokens);
        return Qformer.call(query_tokens.expand(imageEmbeds.shape[0], -1, -1), imageEmbeds);
    }

    /// <summary>
    /// Loads ln_vision, the query tokens and the Q-Former from the BLIP-2 checkpoint
    /// (<c>blip2_pretrained_flant5xxl.pth</c>, LAVIS or Hugging Face names, see <see cref="QFormerNames"/>) and
    /// <c>llama_proj</c> from the MiniGPT-4 stage-2 checkpoint (<c>pretrained_minigpt4.pth</c>); the output width
    /// comes from <c>llama_proj.weight</c>'s shape.
    /// </summary>
    public static QFormerProjector Load(IWeightSource blip2, IWeightSource stage2, QFormerConfig config, ScalarType dtype, Device device,
        bool keepFloat16 = true)
    {
        config.Validate();
        var view = QFormerNames.ToLavis(blip2);
        var storedHalf = keepFloat16 && view.KeepsFloat16(LinearWeightKeys(config), dtype, device);
        return Loaded(new QFormerProjector(config, LlamaProjShape(stage2).Out, dtype, device, storedHalf),
            (view, new LoadRules { Ignore = Blip2Ignores(config), AllowMissing = ["llama_proj.*"] }),
            (stage2, new LoadRules { Ignore = Stage2Ignores, AllowMissing = ["ln_vision.*", "query_tokens", "Qformer.*"] }));
    }

    /// <summary>The Q-Former layers' linear weights (LAVIS names).</summary>
    private static IEnumerable<string> LinearWeightKeys(QFormerConfig config) => Enumerable.Range(0, config.Layers).SelectMany(i =>
    {
        var layer = $"Qformer.bert.encoder.layer.{i}";
        var attentions = config.HasCrossAttention(i) ? new[] { "attention", "crossattention" } : ["attention"];
        return attentions.SelectMany(a => new[] { $"{layer}.{a}.self.query", $"{layer}.{a}.self.key", $"{layer}.{a}.self.value", $"{layer}.{a}.output.dense" })
            .Concat([$"{layer}.intermediate_query.dense", $"{layer}.output_query.dense"])
            .Select(k => k + ".weight");
    });

    /// <summary>
    /// Keys of a LAVIS BLIP-2 checkpoint that MiniGPT-4 does not use: the Flan-T5
    /// projection, the position-id buffer, and, should a checkpoint hold them, the MLM head, the word and
    /// position embeddings and the text-branch feed-forward of every layer.
    /// </summary>
    private static List<string> Blip2Ignores(QFormerConfig config)
    {
        List<string> list =
        [
            "t5_proj.weight", "t5_proj.bias",
            "Qformer.bert.embeddings.position_ids",
            "Qformer.cls.*",
            "Qformer.bert.embeddings.word_embeddings.*",
            "Qformer.bert.embeddings.position_embeddings.*",
        ];
        foreach (var textFfn in new[] { "intermediate.dense", "output.dense", "output.LayerNorm" })
            for (var i = 0; i < config.Layers; i++) list.Add($"Qformer.bert.encoder.layer.{i}.{textFfn}.*");
        return list;
    }
}
