using MiniGpt4.Prompting;

namespace MiniGpt4;

/// <summary>How a variant turns vision features into language-model embeddings.</summary>
internal enum ProjectorKind
{
    /// <summary>BLIP-2's Q-Former (32 learned queries) then <c>llama_proj</c>.</summary>
    QFormer,

    /// <summary>Four neighbouring patch features concatenated, then <c>llama_proj</c> (no Q-Former).</summary>
    ConcatFour,
}

/// <summary>The files a variant's manifest names when it does not say otherwise (the released file names).</summary>
internal sealed record PresetFiles(string Vision, string? QFormer, string Projection, string LanguageModel);

/// <summary>
/// Everything that makes one member of the model family what it is, in one record: its manifest names,
/// prompt template, whether the template's <c>###</c> separator stops generation, image size, projector,
/// LoRA, the released file names and the demo's generation defaults. Adding a variant is adding a row to
/// <see cref="All"/> (and a <see cref="ModelVariant"/> value).
/// </summary>
internal sealed record ModelPreset(
    ModelVariant Variant,
    string Name,
    IReadOnlyList<string> Aliases,
    ConversationTemplate Template,
    bool StopsAtSeparator,
    int ImageSize,
    ProjectorKind Projector,
    int TokensPerImage,
    double? LoraAlpha,
    PresetFiles Files,
    GenerationOptions Defaults)
{
    /// <summary>MiniGPT-4 with Vicuna v0: Q-Former, 32 image tokens, <c>###Human:</c> template, the demo's <c>###</c> stops.</summary>
    public static ModelPreset Vicuna0 { get; } = new(
        ModelVariant.MiniGpt4Vicuna0, "minigpt4-vicuna0", ["minigpt4"], ConversationTemplate.Vicuna0,
        StopsAtSeparator: true, ImageSize: 224, ProjectorKind.QFormer, TokensPerImage: 32, LoraAlpha: null,
        new PresetFiles("eva_vit_g.pth", "blip2_pretrained_flant5xxl.pth", "prerained_minigpt4_7b.pth", "vicuna-7b"),
        new GenerationOptions());

    /// <summary>MiniGPT-4 for Llama-2: four patches concatenated, 64 image tokens, <c>[INST]</c> template, the demo's <c>###</c> stops.</summary>
    public static ModelPreset Llama2 { get; } = new(
        ModelVariant.MiniGpt4Llama2, "minigpt4-llama2", [], ConversationTemplate.Llama2,
        StopsAtSeparator: true, ImageSize: 224, ProjectorKind.ConcatFour, TokensPerImage: 64, LoraAlpha: null,
        new PresetFiles("eva_vit_g.pth", null, "pretrained_minigpt4_llama2_7b.pth", "Llama-2-7b-chat-hf"),
        new GenerationOptions());

    /// <summary>MiniGPT-v2: 448 px, 256 image tokens, LoRA merged at load, EOS only; demo_v2's temperature 0.6 and 500 new tokens.</summary>
    public static ModelPreset MiniGptV2 { get; } = new(
        ModelVariant.MiniGptV2, "minigptv2", ["minigpt-v2"], ConversationTemplate.MiniGptV2,
        StopsAtSeparator: false, ImageSize: 448, ProjectorKind.ConcatFour, TokensPerImage: 256, LoraAlpha: 16,
        new PresetFiles("eva_vit_g.pth", null, "minigptv2_checkpoint.pth", "Llama-2-7b-chat-hf"),
        new GenerationOptions { Temperature = 0.6f, MaxNewTokens = 500 });

    public static IReadOnlyList<ModelPreset> All { get; } = [Vicuna0, Llama2, MiniGptV2];

    public static ModelPreset For(ModelVariant variant) =>
        All.FirstOrDefault(p => p.Variant == variant) ?? throw new ArgumentOutOfRangeException(nameof(variant), variant, "unknown model variant");

    /// <summary>The preset a manifest's <c>variant</c> names, or null.</summary>
    public static ModelPreset? Find(string name) =>
        All.FirstOrDefault(p => p.Name == name || p.Aliases.Contains(name));

    /// <summary>The names a manifest may use, for error messages.</summary>
    public static string Names => string.Join(", ", All.Select(p => p.Name));
}
