using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Bridge;

/// <summary>
/// The MiniGPT-4 (Vicuna v0) bridge: ln_vision -> Q-Former (learned queries cross-attending to all ViT tokens)
/// -> <c>llama_proj</c>. Parameter names equal the assembled MiniGPT-4 model's (<c>ln_vision.*</c>,
/// <c>query_tokens</c>, <c>Qformer.bert.*</c>, <c>llama_proj.*</c>), so the BLIP-2 and stage-2 checkpoints map 1:1.
/// </summary>
internal sealed class QFormerProjector : nn.Module<Tensor, Tensor>, IVisionProjector
{
    private readonly VisionLayerNorm ln_vision;
    private readonly Parameter query_tokens;
    private readonly QFormer Qformer;
    private readonly Linear llama_proj;

    public QFormerProjector(QFormerConfig config, int outputDim, ScalarType dtype, Device device) : base(nameof(QFormerProjector))
    {
        Config = config.Validate();
        DType = dtype;
        Device = device;
        OutputDim = outputDim;
        ln_vision = new VisionLayerNorm(config.EncoderWidth, device);
        query_tokens = EmptyInit.Parameter([1, config.NumQueryTokens, config.Hidden], dtype, device);
        Qformer = new QFormer(config, dtype, device);
        llama_proj = EmptyInit.Linear(config.Hidden, outputDim, true, dtype, device);
        RegisterComponents();
    }

    /// <summary>The Q-Former shape.</summary>
    public QFormerConfig Config { get; }

    /// <summary>Dtype of the Q-Former and projection (ln_vision is always float32).</summary>
    public ScalarType DType { get; }

    /// <summary>Parameter device.</summary>
    public Device Device { get; }

    /// <inheritdoc/>
    public int TokensPerImage => Config.NumQueryTokens;

    /// <inheritdoc/>
    public int OutputDim { get; }

    /// <inheritdoc/>
    public Tensor Project(Tensor visionTokens)
    {
        ProjectorInput.Check(visionTokens, Config.EncoderWidth, minTokens: 1);
        using var _ = inference_mode();
        using var scope = NewDisposeScope();
        return forward(visionTokens.to(Device)).MoveToOuterDisposeScope(); // ln_vision sees the ViT's float32 tokens
    }

    /// <summary>ViT tokens -> <c>[B, Q, OutputDim]</c>.</summary>
    public override Tensor forward(Tensor visionTokens)
    {
        using var scope = NewDisposeScope();
        return llama_proj.call(QFormerOutput(visionTokens)).MoveToOuterDisposeScope();
    }

    /// <summary>The Q-Former's last hidden state <c>[B, Q, Hidden]</c> (before <c>llama_proj</c>).</summary>
    public Tensor QFormerOutput(Tensor visionTokens)
    {
        using var scope = NewDisposeScope();
        var imageEmbeds = LnVision(visionTokens).to(DType);
        var queries = query_tokens.expand(imageEmbeds.shape[0], -1, -1);
        return Qformer.call(queries, imageEmbeds).MoveToOuterDisposeScope();
    }

    /// <summary>ln_vision applied to the ViT tokens (computed in float32, returned in the input dtype).</summary>
    public Tensor LnVision(Tensor visionTokens) => ln_vision.call(visionTokens);

    /// <summary>
    /// Loads ln_vision, the query tokens and the Q-Former from the BLIP-2 checkpoint
    /// (<c>blip2_pretrained_flant5xxl.pth</c>) and <c>llama_proj</c> from the MiniGPT-4 stage-2 checkpoint
    /// (<c>pretrained_minigpt4.pth</c>); the output width comes from <c>llama_proj.weight</c>'s shape.
    /// </summary>
    public static QFormerProjector Load(string blip2Path, string stage2Path, QFormerConfig config, ScalarType dtype, Device device)
    {
        using var blip2 = WeightFiles.Open(blip2Path);
        using var stage2 = WeightFiles.Open(stage2Path);
        return Load(blip2, stage2, config, dtype, device);
    }

    /// <summary>
    /// Loads from open weight sources (see <see cref="Load(string, string, QFormerConfig, ScalarType, Device)"/>);
    /// <paramref name="blip2"/> may also use Hugging Face BLIP-2 names (<see cref="QFormerNames"/>).
    /// </summary>
    public static QFormerProjector Load(IWeightSource blip2, IWeightSource stage2, QFormerConfig config, ScalarType dtype, Device device)
    {
        config.Validate();
        blip2 = QFormerNames.ToLavis(blip2);
        var outputDim = ProjectorInput.LlamaProjShape(stage2, config.Hidden, "the Q-Former hidden size").Out;
        var model = new QFormerProjector(config, outputDim, dtype, device);
        try
        {
            ModuleLoader.Load(model, blip2, new LoadRules
            {
                Ignore = Blip2Ignores(config),
                AllowMissing = ["llama_proj.weight", "llama_proj.bias"],
                Device = device,
            });
            ModuleLoader.Load(model, stage2, new LoadRules
            {
                Ignore = Stage2Ignores,
                AllowMissing = ["ln_vision.*", "query_tokens", "Qformer.*"],
                Device = device,
            });
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Keys of a LAVIS BLIP-2 checkpoint that MiniGPT-4 does not use: the Flan-T5
    /// projection, the position-id buffer, and, should a checkpoint hold them, the MLM head, the word and
    /// position embeddings and the text-branch feed-forward of every layer.
    /// </summary>
    public static IReadOnlyList<string> Blip2Ignores(QFormerConfig config)
    {
        var list = new List<string>
        {
            "t5_proj.weight", "t5_proj.bias",
            "Qformer.bert.embeddings.position_ids",
            "Qformer.cls.*",
            "Qformer.bert.embeddings.word_embeddings.*",
            "Qformer.bert.embeddings.position_embeddings.*",
        };
        for (var i = 0; i < config.Layers; i++)
        {
            list.Add($"Qformer.bert.encoder.layer.{i}.intermediate.dense.*");
            list.Add($"Qformer.bert.encoder.layer.{i}.output.dense.*");
            list.Add($"Qformer.bert.encoder.layer.{i}.output.LayerNorm.*");
        }
        return list;
    }

    /// <summary>
    /// Keys of a MiniGPT stage checkpoint that belong to other parts: the LLM's (rotary buffers, LoRA) and the
    /// Q-Former's position-id buffer.
    /// </summary>
    public static readonly IReadOnlyList<string> Stage2Ignores = ["llama_model.*", "Qformer.bert.embeddings.position_ids"];
}
