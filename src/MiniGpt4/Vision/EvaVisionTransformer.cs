using MiniGpt4.Runtime;
using MiniGpt4.Weights;
using TorchSharp.Modules;
using static MiniGpt4.Weights.WeightShapes;
using static TorchSharp.torch;

namespace MiniGpt4.Vision;

/// <summary>
/// The EVA ViT as BLIP-2 / MiniGPT-4 use it: patch embedding, class token, absolute position embedding,
/// <see cref="VisionConfig.Depth"/> pre-norm blocks and no final norm (ln_vision lives in the projector). Pixel values
/// <c>[B, 3, S, S]</c> -> tokens <c>[B, 1 + (S/P)^2, W]</c>. Parameter names equal the keys of <c>eva_vit_g.pth</c>.
/// Precision follows the reference's half-precision convention (LAVIS `eva_vit.py` as MiniGPT-4 runs it): the patch
/// convolution and every Linear run in the compute dtype (<see cref="DType"/>), while the class token, position
/// embedding, LayerNorms and the residual stream stay float32. With float32 this is plain fp32.
/// </summary>
internal sealed class EvaVisionTransformer : nn.Module<Tensor, Tensor>
{
    private readonly PatchEmbed patch_embed;
    private readonly Parameter cls_token;
    private readonly Parameter pos_embed;
    private readonly ModuleList<EvaBlock> blocks;

    private readonly LinearWeights _weights;

    /// <summary>
    /// An uninitialised tower; with <paramref name="storedHalf"/> (bfloat16 on the CPU) the blocks' linear weights are
    /// float16, to be shared with a memory-mapped file (<see cref="LinearWeights"/>).
    /// </summary>
    public EvaVisionTransformer(VisionConfig config, ScalarType dtype, Device device, bool storedHalf = false) : base(nameof(EvaVisionTransformer))
    {
        Config = config.Validate();
        DType = dtype;
        Device = device;
        _weights = new LinearWeights(dtype, device, storedHalf);
        patch_embed = new PatchEmbed(config.PatchSize, config.Width, dtype, device);
        cls_token = EmptyInit.Parameter([1, 1, config.Width], ScalarType.Float32, device);
        pos_embed = EmptyInit.Parameter([1, config.Tokens, config.Width], ScalarType.Float32, device);
        blocks = new ModuleList<EvaBlock>(Enumerable.Range(0, config.Depth).Select(_ => new EvaBlock(config, dtype, device, _weights)).ToArray());
        RegisterComponents();
    }

    /// <summary>Whether the blocks' linear weights are float16 as stored (rounded for each product).</summary>
    public bool StoredHalf => _weights.StoredHalf;

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _weights.Dispose();
        base.Dispose(disposing);
    }

    public VisionConfig Config { get; }

    /// <summary>Compute dtype of the convolution and Linear layers (norms, embeddings and residuals are float32).</summary>
    public ScalarType DType { get; }

    public Device Device { get; }

    /// <summary>
    /// Runs the ViT under inference mode: <paramref name="pixelValues"/> <c>[B, 3, S, S]</c> (any float dtype,
    /// any device; moved to the model's) -> <c>[B, 1 + N, W]</c> float32 (the residual stream). The caller owns the result.
    /// Cancellation is checked before each block.
    /// </summary>
    public Tensor Encode(Tensor pixelValues, CancellationToken cancellationToken = default)
    {
        var s = Config.ImageSize;
        if (pixelValues.dim() != 4 || pixelValues.shape[1] != 3 || pixelValues.shape[2] != s || pixelValues.shape[3] != s || pixelValues.shape[0] < 1)
            throw new MiniGptImageException(
                $"The vision encoder expects pixel values [B, 3, {s}, {s}]; got [{string.Join(", ", pixelValues.shape)}].");
        using var _ = inference_mode();
        using var scope = NewDisposeScope();
        return Run(pixelValues, cancellationToken).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The same computation as <see cref="Encode"/> without inference mode and without its shape check, so autograd
    /// records it (the vision pretraining of src/MiniGpt4.Training differentiates through it).
    /// </summary>
    public override Tensor forward(Tensor pixelValues) => Run(pixelValues, CancellationToken.None);

    private Tensor Run(Tensor pixelValues, CancellationToken cancellationToken)
    {
        var x = patch_embed.call(pixelValues.to(DType, Device)).to(ScalarType.Float32);
        x = cat([cls_token.expand(x.shape[0], -1, -1), x], 1).Plus(pos_embed);
        foreach (var block in blocks)
        {
            cancellationToken.ThrowIfCancellationRequested();
            x = block.call(x);
        }
        return x;
    }

    /// <summary>
    /// Loads an EVA ViT from <paramref name="source"/> (<c>eva_vit_g.pth</c>, or any weight file the weights layer
    /// opens, in LAVIS / MiniGPT (<c>visual_encoder.</c>) or Hugging Face Blip2VisionModel naming) after checking its
    /// shapes (<see cref="VisionConfig.CheckAgainst"/>). Blocks at or after <see cref="VisionConfig.Depth"/> are
    /// ignored; the position embedding is resized (bicubic) when the checkpoint's grid differs from the configured image size.
    /// With <paramref name="keepFloat16"/>, a bfloat16 CPU tower over float16 linear weights it may share keeps them as
    /// stored (<see cref="LinearWeights"/>).
    /// </summary>
    public static EvaVisionTransformer Load(IWeightSource source, VisionConfig config, ScalarType dtype, Device device, IProgress<double>? progress = null,
        bool keepFloat16 = true)
    {
        var view = EvaVitNames.ToLavis(source);
        config.CheckAgainst(view, "the vision configuration");
        // A bfloat16 CPU tower over float16 files it may share: the linear weights stay in the file (see LinearWeights).
        var linears = Enumerable.Range(0, config.Depth).SelectMany(i => new[] { "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2" }.Select(l => $"blocks.{i}.{l}.weight"));
        var storedHalf = keepFloat16 && view.KeepsFloat16(linears, dtype, device);
        var laterBlocks = Enumerable.Range(config.Depth, CountIndexed(view.Keys, "blocks.") - config.Depth);
        var fused = Enumerable.Range(0, config.Depth).Where(i => view.TryGetInfo(EvaVitNames.FusedQkvBias(i), out _)).ToList();
        var rules = new LoadRules
        {
            Ignore = [.. laterBlocks.Select(i => $"blocks.{i}.*"), .. fused.Select(EvaVitNames.FusedQkvBias)],
            AllowMissing = ["pos_embed", .. fused.SelectMany(i => new[] { $"blocks.{i}.attn.q_bias", $"blocks.{i}.attn.v_bias" })],
        };
        return ModuleLoader.LoadOrDispose(new EvaVisionTransformer(config, dtype, device, storedHalf), model =>
        {
            // No LoadRules.DType: the module is mixed precision by design; each tensor is cast to its parameter's dtype.
            // pos_embed may have another grid's shape: it is hidden from the loader and resized below.
            ModuleLoader.Load(model, view.Renamed(k => k == "pos_embed" ? null : k), rules, progress);
            using var _ = no_grad();
            // On the CPU, as the reference does at load time (libtorch's CPU bicubic kernel, bit-exact).
            using (var raw = view.Load("pos_embed", ScalarType.Float32, CPU))
            using (var resized = PositionEmbedding.Interpolate(raw, config.GridSize))
                model.pos_embed.copy_(resized);
            var state = model.state_dict();
            foreach (var i in fused) EvaVitNames.SplitFusedQkvBias(view, i, state[$"blocks.{i}.attn.q_bias"], state[$"blocks.{i}.attn.v_bias"]);
        });
    }
}
