using MiniGpt4.Weights;
using MiniGpt4.Bridge;
using MiniGpt4.Vision;

namespace MiniGpt4;

/// <summary>
/// A model manifest (<c>minigpt4.json</c>): which release files make up a model and the vision
/// encoder's dimensions. Every field is optional and defaults to the real MiniGPT-4 with Vicuna-7B,
/// so a user with the released files only writes the paths. Paths are relative to the manifest.
/// </summary>
public sealed record ModelManifest
{
    /// <summary>The variant; default <see cref="ModelVariant.MiniGpt4Vicuna0"/>.</summary>
    public ModelVariant Variant { get; init; } = ModelVariant.MiniGpt4Vicuna0;

    /// <summary>The EVA-ViT-g encoder.</summary>
    public VisionSection Vision { get; init; } = new();

    /// <summary>The Q-Former (MiniGPT-4 with Vicuna only); null for the other variants.</summary>
    public QFormerSection? QFormer { get; init; }

    /// <summary>The stage-2 checkpoint holding <c>llama_proj</c> (and the LoRA for MiniGPT-v2).</summary>
    public ProjectionSection Projection { get; init; } = new();

    /// <summary>The language model folder (Hugging Face layout) or file.</summary>
    public LlmSection Llm { get; init; } = new();

    /// <summary>LoRA settings (MiniGPT-v2).</summary>
    public LoraSection? Lora { get; init; }

    /// <summary>The folder that relative paths are resolved against (the manifest's folder).</summary>
    public string BaseDirectory { get; init; } = Directory.GetCurrentDirectory();

    /// <summary>EVA-ViT-g settings; defaults are the released encoder's (39 of its 40 blocks are used).</summary>
    public sealed record VisionSection
    {
        /// <summary>The checkpoint (<c>eva_vit_g.pth</c> or a converted safetensors file).</summary>
        public string Checkpoint { get; init; } = ModelPreset.Vicuna0.Files.Vision;
        /// <summary>Input size in pixels (224; 448 for MiniGPT-v2).</summary>
        public int ImageSize { get; init; } = ModelPreset.Vicuna0.ImageSize;
        /// <summary>Patch size (14).</summary>
        public int PatchSize { get; init; } = 14;
        /// <summary>Transformer width (1408).</summary>
        public int Width { get; init; } = 1408;
        /// <summary>Blocks used (39; the file stores 40).</summary>
        public int Depth { get; init; } = 39;
        /// <summary>Attention heads (16).</summary>
        public int Heads { get; init; } = 16;
        /// <summary>MLP hidden size (6144).</summary>
        public int MlpHidden { get; init; } = 6144;

        /// <summary>The encoder's configuration.</summary>
        internal VisionConfig ToConfig() => new(ImageSize, PatchSize, Width, Depth, Heads, MlpHidden);
    }

    /// <summary>Q-Former settings.</summary>
    public sealed record QFormerSection
    {
        /// <summary>The BLIP-2 checkpoint (<c>blip2_pretrained_flant5xxl.pth</c>).</summary>
        public string Checkpoint { get; init; } = ModelPreset.Vicuna0.Files.QFormer!;
        /// <summary>Learned query tokens (32).</summary>
        public int NumQueryTokens { get; init; } = ModelPreset.Vicuna0.TokensPerImage;
        /// <summary>An optional BERT <c>config.json</c> overriding the bert-base defaults.</summary>
        public string? Config { get; init; }
    }

    /// <summary>Projection (stage-2) checkpoint.</summary>
    public sealed record ProjectionSection
    {
        /// <summary>The file; the official 7B name keeps its typo: <c>prerained_minigpt4_7b.pth</c>.</summary>
        public string Checkpoint { get; init; } = ModelPreset.Vicuna0.Files.Projection;
    }

    /// <summary>Language model location.</summary>
    public sealed record LlmSection
    {
        /// <summary>A Hugging Face folder (config.json, tokenizer.model, weights).</summary>
        public string Path { get; init; } = ModelPreset.Vicuna0.Files.LanguageModel;
        /// <summary>An optional tokenizer.model path; default: <c>tokenizer.model</c> in <see cref="Path"/>.</summary>
        public string? Tokenizer { get; init; }
    }

    /// <summary>LoRA settings (MiniGPT-v2).</summary>
    public sealed record LoraSection
    {
        /// <summary>lora_alpha (16); the rank comes from the weight shapes.</summary>
        public double Alpha { get; init; } = ModelPreset.MiniGptV2.LoraAlpha!.Value;
    }

    /// <summary>Resolves a manifest path against <see cref="BaseDirectory"/>.</summary>
    public string Resolve(string path) => System.IO.Path.GetFullPath(System.IO.Path.IsPathRooted(path) ? path : System.IO.Path.Combine(BaseDirectory, path));

    /// <summary>The manifest for the real MiniGPT-4 with Vicuna-7B, with paths relative to <paramref name="baseDirectory"/>.</summary>
    public static ModelManifest Default(string baseDirectory) => new() { BaseDirectory = baseDirectory, QFormer = new QFormerSection() };

    /// <summary>
    /// Reads a manifest from a <c>minigpt4.json</c> file, from a folder holding one, or treats a plain
    /// Hugging Face LLaMA folder (a <c>config.json</c> and no manifest) as a language-model-only manifest.
    /// </summary>
    /// <exception cref="MiniGptConfigurationException">The file is missing, not JSON, or has invalid values.</exception>
    public static ModelManifest Load(string path)
    {
        var full = System.IO.Path.GetFullPath(path);
        if (Directory.Exists(full))
        {
            var inFolder = System.IO.Path.Combine(full, "minigpt4.json");
            if (File.Exists(inFolder)) return Load(inFolder);
            if (File.Exists(System.IO.Path.Combine(full, "config.json")))
                return new ModelManifest { BaseDirectory = full, Llm = new LlmSection { Path = "." }, IsLanguageModelOnly = true };
            throw new MiniGptConfigurationException($"'{full}' holds neither a minigpt4.json manifest nor a Hugging Face config.json.");
        }
        return FromJson(ConfigJson.Read(full), System.IO.Path.GetDirectoryName(full)!, full);
    }

    /// <summary>True for a manifest that names only a language model (no vision sections given).</summary>
    public bool IsLanguageModelOnly { get; init; }

    /// <summary>The manifest file (or the name given to <see cref="Parse"/>), for messages; null for a manifest built in code.</summary>
    internal string? SourceName { get; init; }

    /// <summary>The manifest's name for messages.</summary>
    internal string Where => SourceName ?? "model manifest";

    /// <summary>The language model's folder (the one holding <c>config.json</c>).</summary>
    internal string LlmFolder
    {
        get
        {
            var path = Resolve(Llm.Path);
            return Directory.Exists(path) ? path : System.IO.Path.GetDirectoryName(path)!;
        }
    }

    /// <summary>
    /// The Q-Former's configuration (null without one): the BERT <c>config.json</c> when the section names one
    /// (read here), with the section's query count and the vision width.
    /// </summary>
    internal QFormerConfig? ReadQFormerConfig() => QFormer switch
    {
        null => null,
        { Config: null } q => new QFormerConfig(NumQueryTokens: q.NumQueryTokens, EncoderWidth: Vision.Width),
        { } q => QFormerConfig.FromBertConfigJson(Resolve(q.Config), q.NumQueryTokens, encoderWidth: Vision.Width),
    };

    /// <summary>Parses manifest JSON; relative paths resolve against <paramref name="baseDirectory"/>.</summary>
    /// <exception cref="MiniGptConfigurationException">The text is not JSON (duplicate keys included), or has invalid values.</exception>
    public static ModelManifest Parse(string json, string baseDirectory, string? sourceName = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        return FromJson(ConfigJson.Parse(json, sourceName ?? "model manifest"), baseDirectory, sourceName);
    }

    private static ModelManifest FromJson(ConfigJson root, string baseDirectory, string? sourceName)
    {
        var variantName = root.String("variant") ?? ModelPreset.Vicuna0.Name;
        var preset = ModelPreset.Find(variantName) ?? throw root.Check.Error($"unknown variant '{variantName}' (expected {ModelPreset.Names})");
        var hasQFormer = preset.Projector == ProjectorKind.QFormer;
        root.Check.Require(hasQFormer || root["qformer"] is null, $"variant '{variantName}' has no Q-Former; remove the 'qformer' section");
        var (v, q, p, l, lora) = (root.Object("vision"), root.Object("qformer"), root.Object("projection"), root.Object("llm"), root.Object("lora"));
        var d = new VisionSection();
        var m = new ModelManifest
        {
            Variant = preset.Variant, BaseDirectory = baseDirectory, SourceName = sourceName,
            Vision = new VisionSection
            {
                Checkpoint = v?.String("checkpoint") ?? preset.Files.Vision,
                ImageSize = v?.Int("image_size") ?? preset.ImageSize,
                PatchSize = v?.Int("patch_size") ?? d.PatchSize,
                Width = v?.Int("width") ?? d.Width,
                Depth = v?.Int("depth") ?? d.Depth,
                Heads = v?.Int("heads") ?? d.Heads,
                MlpHidden = v?.Int("mlp_hidden") ?? d.MlpHidden,
            },
            QFormer = !hasQFormer ? null : new QFormerSection
            {
                Checkpoint = q?.String("checkpoint") ?? preset.Files.QFormer!,
                NumQueryTokens = q?.Int("num_query_tokens") ?? preset.TokensPerImage,
                Config = q?.String("config"),
            },
            Projection = new ProjectionSection { Checkpoint = p?.String("checkpoint") ?? preset.Files.Projection },
            Llm = new LlmSection { Path = l?.String("path") ?? preset.Files.LanguageModel, Tokenizer = l?.String("tokenizer") },
            Lora = lora is null && preset.LoraAlpha is null ? null : new LoraSection { Alpha = lora?.Number("alpha") ?? preset.LoraAlpha ?? 16 },
            IsLanguageModelOnly = v is null && q is null && p is null && l is not null,
        };
        m.Validate(root.Check, preset);
        return m;
    }

    /// <summary>The bounds of the vision, Q-Former and LoRA sections (their fit to the checkpoints is checked at load).</summary>
    private void Validate(ConfigCheck check, ModelPreset preset)
    {
        var vision = Vision.ToConfig().Validate(check.Where);
        if (QFormer is { } q) check.InRange("qformer.num_query_tokens", q.NumQueryTokens, QFormerConfig.MaxQueryTokens);
        if (Lora is { } lora) check.Positive("lora.alpha", lora.Alpha);
        if (preset.Projector == ProjectorKind.ConcatFour)
            check.Require(vision.NumPatches % 4 == 0, $"the concat projector needs a patch count divisible by 4 (got {vision.NumPatches})");
    }
}
