using MiniGpt4.Runtime;
using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Vision;

/// <summary>
/// The EVA ViT as BLIP-2 / MiniGPT-4 use it: patch embedding, class token, absolute position
/// embedding, <see cref="VisionConfig.Depth"/> pre-norm blocks and no final norm (ln_vision lives in
/// the projector). Pixel values <c>[B, 3, S, S]</c> -> tokens <c>[B, 1 + (S/P)^2, W]</c>.
/// Parameter names equal the keys of <c>eva_vit_g.pth</c>.
/// Precision follows the reference's half-precision convention (LAVIS `eva_vit.py` as MiniGPT-4 runs it): the patch
/// convolution and every Linear run in the compute dtype (<see cref="DType"/>), while the class token,
/// position embedding, LayerNorms and the residual stream stay float32. With float32 this is plain fp32.
/// </summary>
internal sealed class EvaVisionTransformer : nn.Module<Tensor, Tensor>
{
    private readonly PatchEmbed patch_embed;
    private readonly Parameter cls_token;
    private readonly Parameter pos_embed;
    private readonly ModuleList<EvaBlock> blocks;

    public EvaVisionTransformer(VisionConfig config, ScalarType dtype, Device device) : base(nameof(EvaVisionTransformer))
    {
        Config = config.Validate();
        DType = dtype;
        Device = device;
        patch_embed = new PatchEmbed(config.PatchSize, config.Width, dtype, device);
        cls_token = EmptyInit.Parameter([1, 1, config.Width], ScalarType.Float32, device);
        pos_embed = EmptyInit.Parameter([1, config.Tokens, config.Width], ScalarType.Float32, device);
        blocks = new ModuleList<EvaBlock>(Enumerable.Range(0, config.Depth).Select(_ => new EvaBlock(config, dtype, device)).ToArray());
        RegisterComponents();
    }

    /// <summary>The shape this model was built for.</summary>
    public VisionConfig Config { get; }

    /// <summary>Compute dtype of the convolution and Linear layers (norms, embeddings and residuals are float32).</summary>
    public ScalarType DType { get; }

    /// <summary>Parameter device.</summary>
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
        return Forward(pixelValues.to(DType, Device), cancellationToken).MoveToOuterDisposeScope();
    }

    public override Tensor forward(Tensor pixelValues) => Forward(pixelValues, CancellationToken.None);

    private Tensor Forward(Tensor pixelValues, CancellationToken cancellationToken)
    {
        using var scope = NewDisposeScope();
        var x = patch_embed.call(pixelValues.to(DType)).to(ScalarType.Float32);
        var cls = cls_token.expand(x.shape[0], -1, -1);
        x = cat([cls, x], 1).Plus(pos_embed);
        foreach (var block in blocks)
        {
            cancellationToken.ThrowIfCancellationRequested();
            x = block.call(x);
        }
        return x.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Loads an EVA ViT from <paramref name="path"/> (<c>eva_vit_g.pth</c>, or any weight file the
    /// weights layer opens, in LAVIS / MiniGPT (<c>visual_encoder.</c>) or Hugging Face Blip2VisionModel naming).
    /// Blocks at or after <see cref="VisionConfig.Depth"/> are ignored; the position embedding is resized
    /// (bicubic) when the checkpoint's grid differs from the configured image size.
    /// </summary>
    public static EvaVisionTransformer Load(string path, VisionConfig config, ScalarType dtype, Device device, IProgress<double>? progress = null)
    {
        using var source = WeightFiles.Open(path);
        return Load(source, config, dtype, device, progress);
    }

    /// <summary>Loads from an open weight source (see <see cref="Load(string, VisionConfig, ScalarType, Device, IProgress{double}?)"/>).</summary>
    public static EvaVisionTransformer Load(IWeightSource source, VisionConfig config, ScalarType dtype, Device device, IProgress<double>? progress = null)
    {
        config.Validate();
        var view = EvaVitNames.ToLavis(source, out var fusedQkvBias);
        var fileDepth = EvaVitNames.BlockCount(view.Keys);
        if (fileDepth < config.Depth)
            throw new MiniGptWeightsException(
                $"{source.Description} holds {fileDepth} ViT blocks but the configuration needs {config.Depth}.", source.Description);

        if (!view.TryGetInfo("pos_embed", out var posInfo))
            throw new MiniGptWeightsException($"{source.Description} has no pos_embed.", source.Description, "pos_embed");
        var posShape = posInfo.Shape;
        var fileGrid = posShape.Length == 3 && posShape[0] == 1 ? PositionEmbedding.GridOf(posShape[1]) : -1;
        if (fileGrid < 0 || posShape[2] != config.Width)
            throw new MiniGptWeightsException(
                $"pos_embed in {source.Description} has shape [{string.Join(", ", posShape)}]; expected [1, 1 + g*g, {config.Width}].",
                source.Description, "pos_embed");
        var resize = fileGrid != config.GridSize;

        var ignore = new List<string>();
        var allowMissing = new List<string>();
        for (var i = config.Depth; i < fileDepth; i++) ignore.Add($"blocks.{i}.*");
        if (resize) allowMissing.Add("pos_embed"); // filled below from the resized checkpoint tensor
        if (fusedQkvBias)
        {
            ignore.Add("blocks.*.attn.qkv.bias");
            allowMissing.Add("blocks.*.attn.q_bias");
            allowMissing.Add("blocks.*.attn.v_bias");
        }

        var model = new EvaVisionTransformer(config, dtype, device);
        try
        {
            // The checkpoint's pos_embed has the other grid's shape: hide it from the loader, resize it below.
            var loadView = resize ? view.Renamed(k => k == "pos_embed" ? null : k) : view;
            // No LoadRules.DType: the module is mixed precision by design; each tensor is cast to its parameter's dtype.
            ModuleLoader.Load(model, loadView, new LoadRules { Ignore = ignore, AllowMissing = allowMissing, Device = device }, progress);
            using var _ = no_grad();
            if (resize)
            {
                // On the CPU, as the reference does at load time (libtorch's CPU bicubic kernel, bit-exact).
                using var raw = view.Load("pos_embed", ScalarType.Float32, CPU);
                using var resized = PositionEmbedding.Interpolate(raw, config.GridSize);
                model.pos_embed.copy_(resized);
            }
            if (fusedQkvBias) EvaVitNames.SplitFusedQkvBias(model, view, config);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The (possibly interpolated) position embedding <c>[1, 1 + N, W]</c>.</summary>
    internal Tensor PosEmbed => pos_embed;

    /// <summary>The named parameter (for the loader's fix-ups).</summary>
    internal Parameter Parameter(string name)
        => named_parameters().FirstOrDefault(p => p.name == name).parameter
           ?? throw new InvalidOperationException("no parameter " + name);
}
