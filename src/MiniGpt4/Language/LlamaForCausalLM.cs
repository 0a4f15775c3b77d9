using MiniGpt4.Runtime;
using MiniGpt4.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>
/// A LLaMA-family causal language model laid out like Hugging Face <c>LlamaForCausalLM</c>
/// (transformers 4.30), so its state-dict keys equal the checkpoint's: <c>model.embed_tokens.weight</c>,
/// <c>model.layers.N.…</c>, <c>model.norm.weight</c>, <c>lm_head.weight</c> (absent when the config ties
/// the output projection to the embeddings). Parameters are created uninitialised on the target
/// device and dtype; <see cref="Load(string, ScalarType, Device, IProgress{double}?)"/> fills them. Inference runs through a
/// <see cref="LlamaSession"/> (KV cache, in place, inference mode); training through <see cref="Forward"/>
/// (whole sequences, no cache, differentiable).
/// </summary>
internal sealed class LlamaForCausalLM : nn.Module
{
    private readonly LlamaModel model;
    private readonly Proj? lm_head;

    /// <summary>
    /// Creates an uninitialised model (weights are garbage until loaded); with <paramref name="quantization"/> the block
    /// projections and the head hold packed weights (a quantized head exists even when the config ties it to the
    /// embeddings, which stay in <paramref name="dtype"/>). Quantized models run with bfloat16 activations.
    /// </summary>
    public LlamaForCausalLM(LlamaConfig config, ScalarType dtype, Device device, Quantization.LlamaQuantization? quantization = null) : base("LlamaForCausalLM")
    {
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
            throw new MiniGptConfigurationException($"LLaMA dtype {dtype} is not supported (float32, bfloat16 or float16; float64 for exactness checks).");
        if (quantization is not null && dtype != ScalarType.BFloat16)
            throw new MiniGptConfigurationException($"Quantized LLaMA weights run with bfloat16 activations, not {dtype}: load them with the bfloat16 dtype.");
        Config = config.Validate();
        DType = dtype;
        Device = device;
        Quantization = quantization;
        model = new LlamaModel(config, dtype, device, quantization?.Blocks ?? Language.Quantization.QuantFormat.None);
        var head = quantization?.Head ?? Language.Quantization.QuantFormat.None;
        if (!config.TieWordEmbeddings || head != Language.Quantization.QuantFormat.None)
            lm_head = new Proj("lm_head", config.HiddenSize, config.VocabSize, dtype, device, head);
        Rotary = new RotaryEmbedding(config.HeadDim, config.RopeTheta, dtype, device);
        RegisterComponents();
        LinearKernel = DefaultKernel(dtype, device);
        FusedDecode = true;
        DecoderPrefill = dtype == ScalarType.BFloat16 && !Runtime.CpuFeatures.HasBf16MatrixInstructions;
        if (quantization is not null)
            foreach (var proj in Projections) proj.Scratch = _dequantizeScratch;
    }

    private readonly Runtime.Bf16Scratch _dequantizeScratch = new();

    /// <summary>
    /// The kernel a new model uses: <see cref="Kernels.CpuGemvKernel"/> for bfloat16 on a CPU with AVX2/AVX-512 (decode
    /// steps ~1.5× faster than libtorch's bf16 linear), libtorch's <c>linear</c> otherwise (see docs/language-model.md).
    /// </summary>
    internal static ILinearKernel DefaultKernel(ScalarType dtype, Device device)
        => dtype == ScalarType.BFloat16 && device.type == DeviceType.CPU && Kernels.CpuGemvKernel.IsSupported
            ? new Kernels.CpuGemvKernel()
            : TorchLinearKernel.Instance;

    public LlamaConfig Config { get; }

    /// <summary>The quantized layers' formats, or null for a float model.</summary>
    public Quantization.LlamaQuantization? Quantization { get; }

    /// <summary>The dtype of parameters and activations.</summary>
    public ScalarType DType { get; }

    /// <summary>The device of parameters, cache and activations.</summary>
    public Device Device { get; }

    internal LlamaModel Model => model;

    /// <summary>The rotary tables, grown by the sessions and <see cref="Forward"/>.</summary>
    internal RotaryEmbedding Rotary { get; }

    /// <summary>Every projection, the output head included when untied (for kernel selection and benchmarks).</summary>
    internal IEnumerable<Proj> Projections => modules().OfType<Proj>();

    /// <summary>The kernel of every projection and of the tied output head (setting it sets every <see cref="Proj.Kernel"/>).</summary>
    internal ILinearKernel LinearKernel
    {
        get;
        set
        {
            field = value;
            foreach (var p in Projections) p.Kernel = value;
            FusedDecode = false; // a chosen kernel sees every product, decode steps included
        }
    }

    /// <summary>
    /// Whether decode steps run through <see cref="Kernels.CpuDecoder"/> (default where it
    /// <see cref="Kernels.CpuDecoder.Supports">supports</see> the model) or through the blocks and <see cref="LinearKernel"/>.
    /// Setting <see cref="LinearKernel"/> turns it off.
    /// </summary>
    internal bool FusedDecode
    {
        get;
        set
        {
            field = value;
            _decoder?.Dispose();
            _decoder = null;
        }
    }

    /// <summary>
    /// Whether a single-row prefill runs through <see cref="Kernels.CpuDecoder"/> (in chunks of
    /// <see cref="LlamaSession.DecoderPrefillChunk"/> positions, each a multi-row step) rather than libtorch's blocks.
    /// Default: for bfloat16 weights on a CPU without AVX512-BF16 or AMX, where libtorch's bf16 matrix product converts
    /// in software and the decoder's tiles compute faster (docs/language-model.md); float32 keeps libtorch's GEMM.
    /// </summary>
    internal bool DecoderPrefill { get; set; }

    private Kernels.CpuDecoder? _decoder;

    /// <summary>The CPU decoder when <see cref="FusedDecode"/> is on (created at the first step, after loading), else null.</summary>
    internal Kernels.CpuDecoder? Decoder => FusedDecode && Kernels.CpuDecoder.Supports(this) ? _decoder ??= new Kernels.CpuDecoder(this) : null;

    /// <summary>The output projection (float or quantized), or null when it is the (tied) embedding table.</summary>
    internal Proj? HeadProj => lm_head;

    /// <summary>
    /// Token embeddings of <paramref name="ids"/> (int64, any shape, typically <c>[B, T]</c>) as
    /// <c>[..., H]</c> in the model's dtype and device: the rows the pipeline splices image
    /// embeddings between. Throws <see cref="ArgumentOutOfRangeException"/> for ids outside the vocabulary.
    /// </summary>
    public Tensor EmbedTokens(Tensor ids)
    {
        if (ids.dtype != ScalarType.Int64) throw new ArgumentException($"token ids must be int64, got {ids.dtype}", nameof(ids));
        using var scope = NewDisposeScope();
        var onDevice = ids.to(Device);
        if (onDevice.numel() > 0)
        {
            var (min, max) = (onDevice.min().item<long>(), onDevice.max().item<long>());
            if (min < 0 || max >= Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {(min < 0 ? min : max)} is outside the vocabulary [0, {Config.VocabSize}).");
        }
        return EmbedCheckedTokens(onDevice).MoveToOuterDisposeScope();
    }

    /// <summary>Embeddings of ids already checked against the vocabulary and on the model's device (no device sync).</summary>
    internal Tensor EmbedCheckedTokens(Tensor ids)
    {
        using var _ = inference_mode();
        return model.EmbedTokens.call(ids);
    }

    /// <summary>Creates a session with a KV cache for <paramref name="maxTokens"/> positions and <paramref name="rows"/> sequences.</summary>
    public LlamaSession CreateSession(int maxTokens, int rows = 1) => new(this, maxTokens, rows);

    /// <summary>
    /// The training forward: logits <c>[B, T, V]</c> for every position of whole sequences <paramref name="inputEmbeds"/>
    /// <c>[B, T, H]</c> (e.g. token rows spliced with image rows that require grad), without a KV cache. Differentiable:
    /// nothing is written in place and no inference mode or no_grad is entered; products autograd records bypass
    /// <see cref="LinearKernel"/> (<see cref="Proj.Product"/>). <paramref name="attentionMask"/> <c>[B, T]</c> marks real
    /// tokens 1 and left or right padding 0 (null: none); real positions get the unpadded sequence's logits. Float32 on
    /// the model's device (a float64 model keeps float64). Not thread-safe against a session growing the rotary tables.
    /// </summary>
    public Tensor Forward(Tensor inputEmbeds, Tensor? attentionMask = null)
    {
        if (!inputEmbeds.is_floating_point() || inputEmbeds.dim() != 3 || inputEmbeds.shape[2] != Config.HiddenSize || inputEmbeds.shape[1] < 1)
            throw new ArgumentException($"input embeddings must be floating-point [B, T >= 1, {Config.HiddenSize}], got {inputEmbeds.dtype} [{string.Join(", ", inputEmbeds.shape)}].", nameof(inputEmbeds));
        if (attentionMask is not null && !attentionMask.shape.SequenceEqual(inputEmbeds.shape[..2]))
            throw new ArgumentException($"the attention mask must be [B, T] = [{inputEmbeds.shape[0]}, {inputEmbeds.shape[1]}], got [{string.Join(", ", attentionMask.shape)}].", nameof(attentionMask));
        using var scope = NewDisposeScope();
        var real = attentionMask?.ne(TensorMath.Zero).to(Device);
        var hidden = model.Forward(inputEmbeds.to(DType, Device), real, Rotary);
        var logits = Logits(hidden);
        return (DType == ScalarType.Float64 ? logits : logits.to(ScalarType.Float32)).MoveToOuterDisposeScope();
    }

    /// <summary>Final norm and output head for hidden states <c>[..., H]</c>; returns float32 logits on the model's device.</summary>
    internal Tensor Head(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        return Logits(hidden).to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <summary>Final norm and output head in the model's dtype (intermediates go to the caller's scope).</summary>
    private Tensor Logits(Tensor hidden)
    {
        var normed = model.Norm.call(hidden);
        return lm_head is null ? Proj.Product(LinearKernel, normed, model.EmbedTokens.Weight) : lm_head.call(normed);
    }

    /// <summary>
    /// Loads a Hugging Face checkpoint: a folder (<c>config.json</c> beside <c>model.safetensors</c>, <c>pytorch_model.bin</c>
    /// or a sharded index) or one weight file beside its <c>config.json</c>.
    /// </summary>
    public static LlamaForCausalLM Load(string hfFolderOrFile, ScalarType dtype, Device device, IProgress<double>? progress = null)
    {
        var folder = Directory.Exists(hfFolderOrFile) ? hfFolderOrFile : Path.GetDirectoryName(Path.GetFullPath(hfFolderOrFile))!;
        var config = LlamaConfig.FromFile(folder);
        using var source = WeightFiles.Open(hfFolderOrFile);
        return Load(config, source, dtype, device, progress, Path.Combine(folder, "config.json"));
    }

    /// <summary>
    /// Loads a model from a weight source with the Hugging Face keys (<see cref="WeightSourceExtensions.WithPrefix"/> for
    /// a nested LLM). The configuration is checked against the source's headers (<see cref="LlamaConfig.CheckAgainst"/>,
    /// naming <paramref name="configFile"/>) before anything is allocated, then every key before any data is read. A tied
    /// config ignores a stored <c>lm_head.weight</c>; transformers ≤ 4.30's rotary <c>inv_freq</c> buffers are ignored.
    /// With <paramref name="keepFloat16"/>, a bfloat16 CPU model keeps float16 projections in the source's memory map
    /// (<see cref="Language.Quantization.LlamaQuantization.StoredHalf"/>) instead of converting them; pass false when the
    /// weights will be modified (a LoRA merge).
    /// </summary>
    public static LlamaForCausalLM Load(LlamaConfig config, IWeightSource source, ScalarType dtype, Device device, IProgress<double>? progress = null,
        string? configFile = null, bool keepFloat16 = true)
    {
        config.CheckAgainst(source, configFile);
        var quantization = Language.Quantization.LlamaQuantization.Detect(source)
            ?? (keepFloat16 ? Language.Quantization.LlamaQuantization.StoredHalf(source, config, dtype, device) : null);
        var rules = new LoadRules
        {
            Ignore = config.TieWordEmbeddings ? ["*.rotary_emb.inv_freq", "lm_head.weight"] : ["*.rotary_emb.inv_freq"],
            // Built in its dtypes already; a float16 projection kept as stored must not be converted.
            DType = quantization?.Blocks == Language.Quantization.QuantFormat.F16 ? null : dtype,
            Device = device,
        };
        return ModuleLoader.LoadOrDispose(new LlamaForCausalLM(config, dtype, device, quantization), lm => ModuleLoader.Load(lm, source, rules, progress));
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            Rotary.Dispose();
            _decoder?.Dispose();
            _dequantizeScratch.Dispose();
        }
        base.Dispose(disposing);
    }
}
