using MiniGpt4.Imaging.Skia;
using MiniGpt4.Models;
using MiniGpt4.Tests.Support;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>
/// The tiny oracle MiniGPT-4 loaded through the public path (manifest -> MiniGptPipeline.LoadAsync) in
/// float32, with the Pillow-exact JPEG decoder; captures each prefill's embeddings and first logits.
/// </summary>
public sealed class TinyPipelines : IDisposable
{
    private readonly Dictionary<string, MiniGptPipeline> _pipelines = new();

    /// <summary>Embeddings [L,H] and first logits [V] of the last prefill, per variant.</summary>
    public Dictionary<string, (float[] Embeds, long[] EmbedShape, float[] Logits)> LastPrefill { get; } = new();

    public static MiniGptLoadOptions Float32Exact => new()
    {
        DType = MiniGptDType.Float32,
        Images = new ImageDecodingOptions { Decoder = SkiaImageDecoder.Instance },
    };

    public MiniGptPipeline Get(string variant)
    {
        lock (_pipelines)
        {
            if (_pipelines.TryGetValue(variant, out var p)) return p;
            var manifest = Fixtures.Require(variant == "minigptv2" ? "oracle/tiny/minigptv2/minigptv2.json" : $"oracle/tiny/minigpt4-{variant}.json");
            p = MiniGptPipeline.LoadAsync(manifest, Float32Exact).GetAwaiter().GetResult();
            ((LlamaLanguageModel)p.LanguageModel).PrefillObserver = (embeds, logits) =>
            {
                LastPrefill[variant] = (Tensors.ToFloats(embeds), embeds.shape, Tensors.ToFloats(logits));
            };
            _pipelines[variant] = p;
            return p;
        }
    }

    public void Dispose()
    {
        foreach (var p in _pipelines.Values) p.Dispose();
    }
}

/// <summary>The oracle chat the pipeline tests ask: image a, the demo question, 20 greedy tokens without template stops.</summary>
public static class OracleChat
{
    public const string Question = "Describe this image in detail.";

    public static ImageInput ImageA => ImageInput.FromFile(Oracle.Image("a_gradient_shapes_640x480.png"));

    public static GenerationOptions Greedy20 => GenerationOptions.Greedy with { MaxNewTokens = 20, UseTemplateStops = false };

    /// <summary>The reference's greedy ids (repetition penalty 1.0) for image a.</summary>
    public static int[] ReferenceIds(string variant = "vicuna0") =>
        Oracle.Ints(Oracle.Reference["variants"]![variant]!["chat"]!["a_gradient_shapes_640x480.png"]!["runs"]!["rp_1.0"]!["generated_ids"]);
}
