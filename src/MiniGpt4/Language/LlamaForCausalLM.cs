using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>
/// A LLaMA-family causal language model laid out like Hugging Face <c>LlamaForCausalLM</c>
/// (transformers 4.30), so its state-dict keys equal the checkpoint's: <c>model.embed_tokens.weight</c>,
/// <c>model.layers.N.…</c>, <c>model.norm.weight</c>, <c>lm_head.weight</c> (absent when the config ties
/// the output projection to the embeddings). Parameters are created uninitialised on the target
/// device and dtype; <see cref="Load(string, ScalarType, Device, IProgress{double}?)"/> fills them. Inference runs through a <see cref="LlamaSession"/>.
/// </summary>
internal sealed partial class LlamaForCausalLM : nn.Module
{
    private readonly LlamaModel model;
    private readonly Proj? lm_head;
    private readonly RotaryEmbedding _rotary;
    private ILinearKernel _linearKernel = TorchLinearKernel.Instance;

    /// <summary>Creates an uninitialised model (weights are garbage until loaded).</summary>
    public LlamaForCausalLM(LlamaConfig config, ScalarType dtype, Device device) : base("LlamaForCausalLM")
    {
        // float64 is accepted for exactness tests only.
        if (dtype is not (ScalarType.Float32 or ScalarType.BFloat16 or ScalarType.Float16 or ScalarType.Float64))
            throw new MiniGptConfigurationException($"LLaMA dtype {dtype} is not supported (float32, bfloat16 or float16; float64 for exactness checks).");
        Config = config.Validate();
        DType = dtype;
        Device = device;
        model = new LlamaModel(config, dtype, device);
        if (!config.TieWordEmbeddings) lm_head = new Proj("lm_head", config.HiddenSize, config.VocabSize, dtype, device);
        _rotary = new RotaryEmbedding(config.HeadDim, config.RopeTheta, config.MaxPositionEmbeddings, dtype, device);
        RegisterComponents();
        LinearKernel = DefaultKernel(dtype, device);
    }

    /// <summary>
    /// The kernel a new model uses: <see cref="Kernels.CpuGemvKernel"/> for bfloat16 on a CPU with
    /// AVX2/AVX-512 (decode steps ~1.5× faster than libtorch's bf16 linear, near the roofline
    /// here), libtorch's <c>linear</c> otherwise (float32 gains were within this machine's noise;
    /// see docs/language-model.md, "Decode kernel").
    /// </summary>
    internal static ILinearKernel DefaultKernel(ScalarType dtype, Device device)
        => dtype == ScalarType.BFloat16 && device.type == DeviceType.CPU && Kernels.CpuGemvKernel.IsSupported
            ? new Kernels.CpuGemvKernel()
            : TorchLinearKernel.Instance;

    /// <summary>The hyper-parameters.</summary>
    public LlamaConfig Config { get; }

    /// <summary>The dtype of parameters and activations.</summary>
    public ScalarType DType { get; }

    /// <summary>The device of parameters, cache and activations.</summary>
    public Device Device { get; }

    /// <summary>The decoder stack.</summary>
    internal LlamaModel Model => model;

    internal RotaryEmbedding Rotary => _rotary;

    /// <summary>Every projection, the output head included when untied (for kernel selection and benchmarks).</summary>
    internal IEnumerable<Proj> Projections
        => model.Layers.SelectMany(l => l.Projections).Concat(lm_head is null ? [] : [lm_head]);

    /// <summary>
    /// The kernel of every projection and of the tied output head. Setting it sets
    /// <see cref="Proj.Kernel"/> on every projection.
    /// </summary>
    internal ILinearKernel LinearKernel
    {
        get => _linearKernel;
        set
        {
            _linearKernel = value;
            foreach (var p in Projections) p.Kernel = value;
        }
    }

    /// <summary>
    /// Token embeddings of <paramref name="ids"/> (int64, any shape, typically <c>[B, T]</c>) as
    /// <c>[..., H]</c> in the model's dtype and device: the rows the pipeline splices image
    /// embeddings between. Throws <see cref="ArgumentOutOfRangeException"/> for ids outside the vocabulary.
    /// </summary>
    public Tensor EmbedTokens(Tensor ids)
    {
        if (ids.dtype != ScalarType.Int64) throw new ArgumentException($"token ids must be int64, got {ids.dtype}", nameof(ids));
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var onDevice = ids.to(Device);
        if (onDevice.numel() > 0)
        {
            var (min, max) = (onDevice.min().item<long>(), onDevice.max().item<long>());
            if (min < 0 || max >= Config.VocabSize)
                throw new ArgumentOutOfRangeException(nameof(ids), $"token id {(min < 0 ? min : max)} is outside the vocabulary [0, {Config.VocabSize}).");
        }
        return model.EmbedTokens.call(onDevice).MoveToOuterDisposeScope();
    }

    /// <summary>Embeddings of ids already checked against the vocabulary and on the model's device (no device sync).</summary>
    internal Tensor EmbedCheckedTokens(Tensor ids)
    {
        using var _ = inference_mode();
        return model.EmbedTokens.call(ids);
    }

    /// <summary>Creates a session with a KV cache for <paramref name="maxTokens"/> positions and <paramref name="rows"/> sequences.</summary>
    public LlamaSession CreateSession(int maxTokens, int rows = 1) => new(this, maxTokens, rows);

    /// <summary>Final norm and output head for hidden states <c>[..., H]</c>; returns float32 logits on the model's device.</summary>
    internal Tensor Head(Tensor hidden)
    {
        using var scope = NewDisposeScope();
        var normed = model.Norm.call(hidden);
        var logits = lm_head is null ? Proj.Product(_linearKernel, normed, model.EmbedTokens.Weight) : lm_head.call(normed);
        return logits.to(ScalarType.Float32).MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    protected override void Dispose(bool disposing)
    {
        if (disposing) _rotary.Dispose();
        base.Dispose(disposing);
    }
}
