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

    public QFormerProjector(QFormerConfig config, int outputDim, ScalarType dtype, Device device)
        : base(nameof(QFormerProjector), config.EncoderWidth, config.Hidden, outputDim, dtype, device)
    {
        TokensPerImage = config.NumQueryTokens;
        query_tokens = EmptyInit.Parameter([1, config.NumQueryTokens, config.Hidden], dtype, device);
        Qformer = new QFormer(config, dtype, device);
        RegisterComponents();
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
    public static QFormerProjector Load(IWeightSource blip2, IWeightSource stage2, QFormerConfig config, ScalarType dtype, Device device)
    {
        config.Validate();
        return Loaded(new QFormerProjector(config, LlamaProjShape(stage2).Out, dtype, device),
            (QFormerNames.ToLavis(blip2), new LoadRules { Ignore = Blip2Ignores(config), AllowMissing = ["llama_proj.*"] }),
            (stage2, new LoadRules { Ignore = Stage2Ignores, AllowMissing = ["ln_vision.*", "query_tokens", "Qformer.*"] }));
    }

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
