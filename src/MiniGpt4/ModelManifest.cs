using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt4.Weights;
using QFormerShape = MiniGpt4.Bridge.QFormerConfig;
using VisionShape = MiniGpt4.Vision.VisionConfig;

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
        if (!File.Exists(full)) throw new MiniGptConfigurationException($"Model manifest not found: '{full}'.");
        string text;
        try
        {
            var length = new FileInfo(full).Length;
            if (length > MaxFileBytes)
                throw new MiniGptConfigurationException($"{full}: the manifest is {length} bytes, over the {MaxFileBytes >> 20} MB limit.");
            text = File.ReadAllText(full);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new MiniGptConfigurationException($"Cannot read model manifest '{full}': {ex.Message}", ex);
        }
        return Parse(text, System.IO.Path.GetDirectoryName(full)!, full);
    }

    /// <summary>True for a manifest that names only a language model (no vision sections given).</summary>
    public bool IsLanguageModelOnly { get; init; }

    /// <summary>Largest manifest file read (real ones are under 1 KB).</summary>
    internal const long MaxFileBytes = 1L << 20;

    /// <summary>The manifest file (or the name given to <see cref="Parse"/>), for messages; null for a manifest built in code.</summary>
    internal string? SourceName { get; init; }

    /// <summary>
    /// Checks every section against the files it names, reading only configuration files and weight
    /// headers (no tensor data), before any model part is allocated: the language model's
    /// <c>config.json</c> against its weights (<see cref="Language.LlamaConfig.CheckAgainst"/>), the vision
    /// section against the ViT checkpoint (<see cref="VisionShape.CheckAgainst"/>) and the Q-Former
    /// section (with its BERT <c>config.json</c>) against the BLIP-2 checkpoint
    /// (<see cref="QFormerShape.CheckAgainst"/>). Throws <see cref="MiniGptConfigurationException"/> for a
    /// configuration out of bounds and <see cref="MiniGptWeightsException"/> for one that does not fit its
    /// weights, naming the file and the field.
    /// </summary>
    internal void ValidateAgainstCheckpoints()
    {
        var llmPath = Resolve(Llm.Path);
        var llmFolder = Directory.Exists(llmPath) ? llmPath : System.IO.Path.GetDirectoryName(llmPath)!;
        using var llm = WeightFiles.Open(llmPath);
        using var vision = IsLanguageModelOnly ? null : WeightFiles.Open(Resolve(Vision.Checkpoint));
        using var blip2 = IsLanguageModelOnly || QFormer is null ? null : WeightFiles.Open(Resolve(QFormer.Checkpoint));
        ValidateAgainst(Language.LlamaConfig.FromFile(llmFolder), llm, vision, blip2);
    }

    /// <summary>
    /// Checks every configuration against the already opened weight files' headers (no data is read):
    /// the language model's <c>config.json</c>, the vision section and the Q-Former section.
    /// </summary>
    internal void ValidateAgainst(Language.LlamaConfig llmConfig, IWeightSource llm, IWeightSource? vision, IWeightSource? blip2)
    {
        var where = SourceName ?? "model manifest";
        var llmPath = Resolve(Llm.Path);
        var llmFolder = Directory.Exists(llmPath) ? llmPath : System.IO.Path.GetDirectoryName(llmPath)!;
        llmConfig.CheckAgainst(llm, System.IO.Path.Combine(llmFolder, "config.json"));
        if (IsLanguageModelOnly) return;

        var shape = new VisionShape(Vision.ImageSize, Vision.PatchSize, Vision.Width, Vision.Depth, Vision.Heads, Vision.MlpHidden);
        shape.CheckAgainst(global::MiniGpt4.Vision.EvaVitNames.ToLavis(vision!, out _), where);
        if (QFormer is { } q)
        {
            var config = q.Config is null
                ? new QFormerShape(NumQueryTokens: q.NumQueryTokens, EncoderWidth: Vision.Width)
                : QFormerShape.FromBertConfigJson(Resolve(q.Config), q.NumQueryTokens, encoderWidth: Vision.Width);
            config.CheckAgainst(Bridge.QFormerNames.ToLavis(blip2!), q.Config is null ? where : $"{where} (with {Resolve(q.Config)})");
        }
    }

    /// <summary>Parses manifest JSON; relative paths resolve against <paramref name="baseDirectory"/>.</summary>
    /// <exception cref="MiniGptConfigurationException">The text is not JSON (duplicate keys included), or has invalid values.</exception>
    public static ModelManifest Parse(string json, string baseDirectory, string? sourceName = null)
    {
        ArgumentNullException.ThrowIfNull(json);
        var where = sourceName ?? "model manifest";
        try
        {
            return ParseObject(json, baseDirectory, sourceName, where);
        }
        catch (JsonException ex) { throw new MiniGptConfigurationException($"{where}: invalid JSON: {ex.Message}", ex); }
        catch (InvalidOperationException ex) // JsonNode reading a string with an escaped lone surrogate ("\ud800")
        {
            throw new MiniGptConfigurationException($"{where}: invalid JSON text: {ex.Message}", ex);
        }
    }

    private static ModelManifest ParseObject(string json, string baseDirectory, string? sourceName, string where)
    {
        // Duplicate keys are refused (JsonObject would otherwise throw ArgumentException on first access).
        var root = JsonNode.Parse(json, documentOptions: new JsonDocumentOptions
                   {
                       CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, AllowDuplicateProperties = false, MaxDepth = 16,
                   }) as JsonObject
                   ?? throw new MiniGptConfigurationException($"{where}: the top level must be a JSON object.");

        var variantName = Str(root, "variant", where) ?? ModelPreset.Vicuna0.Name;
        var preset = ModelPreset.Find(variantName)
                     ?? throw new MiniGptConfigurationException($"{where}: unknown variant '{variantName}' (expected {ModelPreset.Names}).");
        var files = preset.Files;
        var m = new ModelManifest
        {
            Variant = preset.Variant, BaseDirectory = baseDirectory, SourceName = sourceName,
            Vision = new VisionSection { Checkpoint = files.Vision, ImageSize = preset.ImageSize },
            Projection = new ProjectionSection { Checkpoint = files.Projection },
            Llm = new LlmSection { Path = files.LanguageModel },
        };
        var hasVision = root["vision"] is not null;

        if (Obj(root, "vision", where) is { } v)
        {
            var d = m.Vision;
            m = m with
            {
                Vision = d with
                {
                    Checkpoint = Str(v, "checkpoint", where) ?? d.Checkpoint,
                    ImageSize = Int(v, "image_size", where) ?? d.ImageSize,
                    PatchSize = Int(v, "patch_size", where) ?? d.PatchSize,
                    Width = Int(v, "width", where) ?? d.Width,
                    Depth = Int(v, "depth", where) ?? d.Depth,
                    Heads = Int(v, "heads", where) ?? d.Heads,
                    MlpHidden = Int(v, "mlp_hidden", where) ?? d.MlpHidden,
                },
            };
        }

        if (preset.Projector == ProjectorKind.QFormer)
        {
            var q = Obj(root, "qformer", where);
            var d = new QFormerSection { Checkpoint = files.QFormer!, NumQueryTokens = preset.TokensPerImage };
            m = m with
            {
                QFormer = q is null ? d : d with
                {
                    Checkpoint = Str(q, "checkpoint", where) ?? d.Checkpoint,
                    NumQueryTokens = Int(q, "num_query_tokens", where) ?? d.NumQueryTokens,
                    Config = Str(q, "config", where),
                },
            };
        }
        else if (root["qformer"] is not null)
            throw new MiniGptConfigurationException($"{where}: variant '{variantName}' has no Q-Former; remove the 'qformer' section.");

        if (Obj(root, "projection", where) is { } p)
            m = m with { Projection = new ProjectionSection { Checkpoint = Str(p, "checkpoint", where) ?? m.Projection.Checkpoint } };

        if (Obj(root, "llm", where) is { } l)
            m = m with { Llm = new LlmSection { Path = Str(l, "path", where) ?? m.Llm.Path, Tokenizer = Str(l, "tokenizer", where) } };

        if (Obj(root, "lora", where) is { } lo)
            m = m with { Lora = new LoraSection { Alpha = Dbl(lo, "alpha", where) ?? preset.LoraAlpha ?? 16 } };
        else if (preset.LoraAlpha is { } alpha) m = m with { Lora = new LoraSection { Alpha = alpha } };

        m = m with { IsLanguageModelOnly = !hasVision && root["projection"] is null && root["qformer"] is null && root["llm"] is not null };
        m.Validate(where);
        return m;
    }

    private void Validate(string where)
    {
        void InRange(int value, string name, int max)
        {
            if (value <= 0) throw new MiniGptConfigurationException($"{where}: {name} must be positive (got {value}).");
            if (value > max) throw new MiniGptConfigurationException($"{where}: {name} = {value} is over the limit of {max}.");
        }
        InRange(Vision.ImageSize, "vision.image_size", VisionShape.MaxImageSize);
        InRange(Vision.PatchSize, "vision.patch_size", VisionShape.MaxImageSize);
        InRange(Vision.Width, "vision.width", VisionShape.MaxWidth);
        InRange(Vision.Depth, "vision.depth", VisionShape.MaxDepth);
        InRange(Vision.Heads, "vision.heads", VisionShape.MaxWidth);
        InRange(Vision.MlpHidden, "vision.mlp_hidden", VisionShape.MaxMlpHidden);
        if (Vision.ImageSize % Vision.PatchSize != 0)
            throw new MiniGptConfigurationException($"{where}: vision.image_size {Vision.ImageSize} is not a multiple of patch_size {Vision.PatchSize}.");
        var patches = (Vision.ImageSize / Vision.PatchSize) * (Vision.ImageSize / Vision.PatchSize);
        if (patches > VisionShape.MaxPatches)
            throw new MiniGptConfigurationException($"{where}: vision.image_size {Vision.ImageSize} at patch_size {Vision.PatchSize} gives {patches} patches, over the limit of {VisionShape.MaxPatches}.");
        if (Vision.Width % Vision.Heads != 0)
            throw new MiniGptConfigurationException($"{where}: vision.width {Vision.Width} is not divisible by heads {Vision.Heads}.");
        if (QFormer is { } q) InRange(q.NumQueryTokens, "qformer.num_query_tokens", QFormerShape.MaxQueryTokens);
        if (Lora is { } lora && !(double.IsFinite(lora.Alpha) && lora.Alpha > 0))
            throw new MiniGptConfigurationException($"{where}: lora.alpha must be positive and finite (got {lora.Alpha}).");
        if (Variant != ModelVariant.MiniGpt4Vicuna0)
        {
            var grid = Vision.ImageSize / Vision.PatchSize;
            if (grid * grid % 4 != 0)
                throw new MiniGptConfigurationException($"{where}: the concat projector needs a patch count divisible by 4 (got {grid * grid}).");
        }
    }

    private static JsonObject? Obj(JsonObject o, string name, string where) => o[name] switch
    {
        null => null,
        JsonObject j => j,
        _ => throw new MiniGptConfigurationException($"{where}: '{name}' must be an object."),
    };

    private static string? Str(JsonObject o, string name, string where)
    {
        var n = o[name];
        if (n is null) return null;
        if (n is JsonValue v && v.TryGetValue<string>(out var s))
        {
            // Every string but the variant is a path: a NUL would make Path.GetFullPath throw ArgumentException later.
            if (s.Contains('\0')) throw new MiniGptConfigurationException($"{where}: '{name}' contains a NUL character.");
            return s;
        }
        throw new MiniGptConfigurationException($"{where}: '{name}' must be a string.");
    }

    private static int? Int(JsonObject o, string name, string where)
    {
        var n = o[name];
        if (n is null) return null;
        if (n is JsonValue v && v.TryGetValue<int>(out var i)) return i;
        throw new MiniGptConfigurationException($"{where}: '{name}' must be an integer.");
    }

    private static double? Dbl(JsonObject o, string name, string where)
    {
        var n = o[name];
        if (n is null) return null;
        if (n is JsonValue v && v.TryGetValue<double>(out var d)) return d;
        throw new MiniGptConfigurationException($"{where}: '{name}' must be a number.");
    }
}
