using MiniGpt4.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language.Quantization;

/// <summary>
/// Which linear layers of a LLaMA model are quantized and how: every block projection in <see cref="Blocks"/>, the
/// output head in <see cref="Head"/> (8-bit by default in both formats: in bf16 it would cap the speed-up of 4-bit
/// blocks, and it is the layer most sensitive to error). Embeddings and norms stay in the model's dtype.
/// </summary>
internal sealed record LlamaQuantization(QuantFormat Blocks, QuantFormat Head)
{
    /// <summary>The default plan for <paramref name="blocks"/>: an 8-bit head.</summary>
    public static LlamaQuantization For(QuantFormat blocks) => new(blocks, QuantFormat.Q8);

    /// <summary>The name of a format in files and messages (<c>int8</c>, <c>int4</c>).</summary>
    public static string Name(QuantFormat f) => f switch { QuantFormat.Q8 => "int8", QuantFormat.Q4 => "int4", QuantFormat.F16 => "float16", _ => "none" };

    /// <summary>
    /// The plan that keeps a bfloat16 model's float16 projections in the file's memory map (<see cref="QuantFormat.F16"/>)
    /// instead of converting them into new memory while loading, or null when that does not apply: only for a CPU
    /// model with the CPU decoder (whose products round each weight as it reads it), a source that shares its file
    /// memory, and float16 projections. The head follows when it is a layer of its own; a tied head is the embedding
    /// table, which is converted. Conversion was most of a float16 model's load: new pages fault in slowly on the
    /// virtual machines we measure on (see docs/language-model.md).
    /// </summary>
    public static LlamaQuantization? StoredHalf(IWeightSource source, LlamaConfig config, torch.ScalarType dtype, torch.Device device)
    {
        var keys = Enumerable.Range(0, config.NumHiddenLayers).SelectMany(l => LayerProjections.Select(p => $"model.layers.{l}.{p}.weight"));
        if (!Kernels.CpuGemvKernel.IsSupported || !source.KeepsFloat16(keys, dtype, device)) return null;
        var head = !config.TieWordEmbeddings && source.KeepsFloat16(["lm_head.weight"], dtype, device) ? QuantFormat.F16 : QuantFormat.None;
        return new LlamaQuantization(QuantFormat.F16, head);
    }

    /// <summary>The block projections of a LLaMA layer (key stems under <c>model.layers.N.</c>).</summary>
    public static readonly string[] LayerProjections =
        ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"];

    /// <summary>
    /// The plan a weight source holds, read from its keys (<c>model.layers.0.self_attn.q_proj.q8_weight</c> or
    /// <c>q4_weight</c>, and <c>lm_head.q8_weight</c>/<c>q4_weight</c>); null for a float model. Every other layer is
    /// checked against it by <see cref="ExpectLinear"/>.
    /// </summary>
    public static LlamaQuantization? Detect(IWeightSource source)
    {
        var blocks = FormatOf(source, "model.layers.0.self_attn.q_proj");
        var head = FormatOf(source, "lm_head");
        if (blocks == QuantFormat.None && head == QuantFormat.None) return null;
        return new LlamaQuantization(blocks, head);
    }

    private static QuantFormat FormatOf(IWeightSource source, string stem) =>
        source.TryGetInfo($"{stem}.{QuantLayout.WeightName(QuantFormat.Q8)}", out _) ? QuantFormat.Q8
        : source.TryGetInfo($"{stem}.{QuantLayout.WeightName(QuantFormat.Q4)}", out _) ? QuantFormat.Q4
        : QuantFormat.None;

    /// <summary>
    /// Checks the weight of linear layer <paramref name="stem"/> (<c>[out, in]</c>) in the format <paramref name="format"/>:
    /// a float <c>stem.weight</c>, or uint8 <c>stem.qN_weight [out, row bytes]</c> and bf16 <c>stem.qN_scales [out, blocks]</c>.
    /// Throws <see cref="MiniGptWeightsException"/> naming the tensor that is missing, of the wrong format or shape.
    /// </summary>
    public static void ExpectLinear(IWeightSource source, string stem, QuantFormat format, long outFeatures, long inFeatures, string because)
    {
        if (format is QuantFormat.None or QuantFormat.F16)
        {
            WeightShapes.Expect(source, stem + ".weight", [outFeatures, inFeatures], because);
            return;
        }
        var other = format == QuantFormat.Q8 ? QuantFormat.Q4 : QuantFormat.Q8;
        var weightKey = $"{stem}.{QuantLayout.WeightName(format)}";
        if (!source.TryGetInfo(weightKey, out _))
        {
            var found = source.TryGetInfo($"{stem}.{QuantLayout.WeightName(other)}", out _) ? $"{Name(other)} ({stem}.{QuantLayout.WeightName(other)})"
                : source.TryGetInfo(stem + ".weight", out _) ? $"float ({stem}.weight)" : "no weight";
            throw new MiniGptWeightsException(
                $"{source.Description}: '{weightKey}' is missing: the model's other layers are {Name(format)}, this file holds {found} for '{stem}' (mixed or damaged quantized file).",
                source.Description, weightKey);
        }
        Expect(source, weightKey, torch.ScalarType.Byte, [outFeatures, QuantLayout.RowBytes(format, inFeatures)], because, format);
        Expect(source, $"{stem}.{QuantLayout.ScalesName(format)}", torch.ScalarType.BFloat16, [outFeatures, QuantLayout.BlocksPerRow(inFeatures)], because, format);
    }

    private static void Expect(IWeightSource source, string key, torch.ScalarType dtype, long[] shape, string because, QuantFormat format)
    {
        if (!source.TryGetInfo(key, out var info))
            throw new MiniGptWeightsException($"{source.Description}: missing key '{key}' ({Name(format)} weights need it).", source.Description, key);
        if (info.DType != dtype || !info.Shape.AsSpan().SequenceEqual(shape))
            throw new MiniGptWeightsException(
                $"{source.Description}: '{key}' is {info.Describe()} but {because} imply {DTypes.FormatShape(shape)} {dtype} in the {Name(format)} layout " +
                $"(blocks of {QuantLayout.BlockWeights}, rows padded to {QuantLayout.SuperWeights}).", source.Description, key);
    }
}
