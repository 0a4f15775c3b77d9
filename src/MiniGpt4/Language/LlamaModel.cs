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
    private readonly LlamaDecoderLayer[] _layers;

    /// <summary>Creates an uninitialised stack.</summary>
    public LlamaModel(LlamaConfig config, ScalarType dtype, Device device) : base("model")
    {
        embed_tokens = new TokenEmbedding("embed_tokens", config.VocabSize, config.HiddenSize, dtype, device);
        layers = new ModuleList<LlamaDecoderLayer>();
        for (var i = 0; i < config.NumHiddenLayers; i++)
            layers.Add(new LlamaDecoderLayer(i.ToString(System.Globalization.CultureInfo.InvariantCulture), config, dtype, device));
        _layers = layers.ToArray();
        norm = new RmsNorm("norm", config.HiddenSize, config.RmsNormEps, dtype, device);
        RegisterComponents();
    }

    /// <summary>The token embedding.</summary>
    public TokenEmbedding EmbedTokens => embed_tokens;

    /// <summary>The decoder blocks.</summary>
    public IReadOnlyList<LlamaDecoderLayer> Layers => _layers;

    /// <summary>The final norm.</summary>
    public RmsNorm Norm => norm;
}
