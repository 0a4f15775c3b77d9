namespace MiniGpt4.Cli.Synth;

/// <summary>The element type the synthesized files store.</summary>
internal enum SynthDType
{
    Float16,
    BFloat16,
    Float32,
}

internal static class SynthDTypes
{
    public static int Size(this SynthDType t) => t == SynthDType.Float32 ? 4 : 2;

    /// <summary>The safetensors header name.</summary>
    public static string SafetensorsName(this SynthDType t) => t switch { SynthDType.Float16 => "F16", SynthDType.BFloat16 => "BF16", _ => "F32" };

    /// <summary>The torch storage class a torch.save pickle names.</summary>
    public static string TorchStorage(this SynthDType t) => t switch { SynthDType.Float16 => "HalfStorage", SynthDType.BFloat16 => "BFloat16Storage", _ => "FloatStorage" };

    /// <summary>config.json's torch_dtype.</summary>
    public static string TorchName(this SynthDType t) => t switch { SynthDType.Float16 => "float16", SynthDType.BFloat16 => "bfloat16", _ => "float32" };
}

/// <summary>A Hugging Face LLaMA configuration (the fields config.json carries).</summary>
internal sealed record LlmShape(
    int Hidden, int Intermediate, int Layers, int Heads, int KvHeads, int Vocab, int MaxPositions, double RmsNormEps,
    double RopeTheta = 10000)
{
    public int HeadDim => Hidden / Heads;

    /// <summary>Vicuna v0 adds a [PAD] token after the 32 000 SentencePiece pieces (added_tokens.json); its embedding has 32 001 rows.</summary>
    public bool HasPadToken => Vocab == 32001;
}

/// <summary>EVA-ViT-g as released (LAVIS <c>eva_vit_g.pth</c>): 40 blocks stored, 39 used; 224 px position table.</summary>
internal static class EvaVitG
{
    public const int Width = 1408, Heads = 16, MlpHidden = 6144, Patch = 14, StoredBlocks = 40, UsedBlocks = 39, PositionGrid = 16;
}

/// <summary>BLIP-2's Q-Former as MiniGPT-4 uses it (bert-base with cross-attention every other layer, 32 queries).</summary>
internal static class QFormerBase
{
    public const int Hidden = 768, Layers = 12, Intermediate = 3072, Queries = 32, CrossAttentionFrequency = 2, T5Width = 4096;
}

/// <summary>
/// One released MiniGPT-4 model: its manifest variant, language model shape and the file names of the
/// release (so a synthesized folder looks like the downloads).
/// </summary>
internal sealed record SynthPreset(
    string Name,
    string Variant,
    LlmShape Llm,
    string LlmFolder,
    bool HasQFormer,
    string ProjectionFile,
    int ImageSize = 224,
    int? LoraRank = null,
    double? LoraAlpha = null)
{
    public const string VisionFile = "eva_vit_g.pth";
    public const string QFormerFile = "blip2_pretrained_flant5xxl.pth";

    /// <summary>Vicuna v0 7B's shape (LLaMA-7B with the [PAD] row).</summary>
    public static readonly LlmShape Vicuna7B = new(4096, 11008, 32, 32, 32, 32001, 2048, 1e-6);

    /// <summary>Vicuna v0 13B's shape.</summary>
    public static readonly LlmShape Vicuna13B = new(5120, 13824, 40, 40, 40, 32001, 2048, 1e-6);

    /// <summary>Llama-2-7b-chat-hf's shape.</summary>
    public static readonly LlmShape Llama2_7B = new(4096, 11008, 32, 32, 32, 32000, 4096, 1e-5);

    public static IReadOnlyList<SynthPreset> All { get; } =
    [
        new("vicuna-7b", "minigpt4-vicuna0", Vicuna7B, "vicuna-7b", HasQFormer: true, "prerained_minigpt4_7b.pth"),
        new("vicuna-13b", "minigpt4-vicuna0", Vicuna13B, "vicuna-13b", HasQFormer: true, "pretrained_minigpt4.pth"),
        new("llama2-7b", "minigpt4-llama2", Llama2_7B, "Llama-2-7b-chat-hf", HasQFormer: false, "pretrained_minigpt4_llama2_7b.pth"),
        new("minigptv2", "minigptv2", Llama2_7B, "Llama-2-7b-chat-hf", HasQFormer: false, "minigptv2_checkpoint.pth",
            ImageSize: 448, LoraRank: 64, LoraAlpha: 16),
    ];

    public static SynthPreset Get(string name) => All.Single(p => p.Name == name);

    /// <summary>The projection's input width: the Q-Former's 768, or four concatenated ViT features.</summary>
    public int ProjectionInput => HasQFormer ? QFormerBase.Hidden : 4 * EvaVitG.Width;
}
