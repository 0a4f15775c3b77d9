using MiniGpt4.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>The decoder stack without the output head (HF <c>LlamaModel</c>, key prefix <c>model.</c>).</summary>
internal sealed class LlamaModel : nn.Module
{
    private readonly TokenEmbedding embed_tokens;
    private readonly ModuleList<LlamaDecoderLayer> layers;
    private readonly RmsNorm norm;
    private readonly int _groups;

    public LlamaModel(LlamaConfig config, ScalarType dtype, Device device, Quantization.QuantFormat quant = Quantization.QuantFormat.None) : base("model")
    {
        embed_tokens = new TokenEmbedding("embed_tokens", config.VocabSize, config.HiddenSize, dtype, device);
        Layers = Enumerable.Range(0, config.NumHiddenLayers)
            .Select(i => new LlamaDecoderLayer(i.ToString(System.Globalization.CultureInfo.InvariantCulture), config, dtype, device, quant)).ToArray();
        layers = new ModuleList<LlamaDecoderLayer>([.. Layers]);
        norm = new RmsNorm("norm", config.HiddenSize, config.RmsNormEps, dtype, device);
        _groups = config.QueriesPerKeyValue;
        RegisterComponents();
    }

    public TokenEmbedding EmbedTokens => embed_tokens;

    public IReadOnlyList<LlamaDecoderLayer> Layers { get; }

    public RmsNorm Norm => norm;

    /// <summary>
    /// Runs every block over whole sequences <paramref name="x"/> <c>[B, T, H]</c> without a KV cache (differentiable);
    /// <paramref name="real"/> (bool <c>[B, T]</c>) marks real tokens, null when no row is padded. Returns the last
    /// block's output, before the final norm.
    /// </summary>
    public Tensor Forward(Tensor x, Tensor? real, RotaryEmbedding rotary)
    {
        using var scope = NewDisposeScope();
        var t = x.shape[1];
        rotary.EnsureLength((int)t);
        var (cos, sin) = real is null ? rotary.Slice(0, t) : rotary.At(Positions(real));
        var mask = LlamaAttention.GroupedMask(Allowed(real, t, x.device), _groups);
        foreach (var layer in Layers) x = layer.Forward(x, cos, sin, mask);
        return x.MoveToOuterDisposeScope();
    }

    // Each token's position among the real tokens of its row (pads get the count before them), as
    // transformers' generate derives position ids from the mask: 0..T-1 under right padding, and a
    // left-padded row sees the positions it would have alone.
    private static Tensor Positions(Tensor real)
    {
        var ones = real.to(ScalarType.Int64);
        return ones.cumsum(1).sub(ones);
    }

    // Query i may attend key j iff j <= i and j is a real token ([T, T], or [B, T, T] with padding). A query always
    // sees itself: a padded query whose earlier keys are all padding would otherwise get an all-masked row (a NaN
    // softmax that later layers would spread through 0·NaN); its output stays finite garbage that no real query reads.
    private static Tensor Allowed(Tensor? real, long t, Device device)
    {
        using var length = t.ToScalar(); // held in a local for the call: see TensorMath
        var index = TensorMath.Range(TensorMath.Zero, length, ScalarType.Int64, device);
        var (keys, queries) = (index.unsqueeze(0), index.unsqueeze(1));
        var causal = keys <= queries;
        return real is null ? causal : causal.logical_and(real.unsqueeze(1).logical_or(keys.eq(queries)));
    }
}
