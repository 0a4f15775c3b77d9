namespace MiniGpt4.Training;

/// <summary>
/// Options of a vision pretraining run (<see cref="VisionPretrainer"/>): the shapes of the small EVA-style vision tower
/// and Q-Former it builds, and the optimisation. Defaults are the bundled toy model's (docs/toy-model.md).
/// </summary>
public sealed record VisionPretrainingOptions
{
    /// <summary>Input size in pixels (the manifest's <c>vision.image_size</c>); a multiple of <see cref="PatchSize"/>.</summary>
    public int ImageSize { get; init; } = 112;

    /// <summary>Patch size (14, as EVA-ViT-g).</summary>
    public int PatchSize { get; init; } = 14;

    /// <summary>ViT width.</summary>
    public int Width { get; init; } = 64;

    /// <summary>ViT blocks.</summary>
    public int Depth { get; init; } = 3;

    /// <summary>ViT attention heads.</summary>
    public int Heads { get; init; } = 4;

    /// <summary>ViT MLP hidden size.</summary>
    public int MlpHidden { get; init; } = 192;

    /// <summary>Q-Former hidden size.</summary>
    public int QFormerHidden { get; init; } = 64;

    /// <summary>Q-Former layers.</summary>
    public int QFormerLayers { get; init; } = 2;

    /// <summary>Q-Former attention heads.</summary>
    public int QFormerHeads { get; init; } = 4;

    /// <summary>Q-Former feed-forward size.</summary>
    public int QFormerIntermediate { get; init; } = 192;

    /// <summary>Cross-attention every this many Q-Former layers (1: every layer).</summary>
    public int CrossAttentionFreq { get; init; } = 1;

    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 6000;

    /// <summary>Images per step.</summary>
    public int BatchSize { get; init; } = 32;

    /// <summary>Peak learning rate (AdamW; linear warm-up, then cosine decay to a tenth).</summary>
    public double LearningRate { get; init; } = 3e-3;

    /// <summary>Warm-up steps; null: a twentieth of <see cref="Steps"/>.</summary>
    public int? WarmupSteps { get; init; }

    /// <summary>AdamW weight decay of the matrices (none on biases, norms and embeddings).</summary>
    public double WeightDecay { get; init; } = 0.05;

    /// <summary>Weight of the patch-class loss beside the query-class loss (0: queries only).</summary>
    public double PatchLossWeight { get; init; } = 1.0;

    /// <summary>Seed of the weights' initialisation and of the training images (world seed).</summary>
    public int Seed { get; init; } = 1;

    /// <summary>Intra-op threads for libtorch (null: the process-wide setting, libtorch's default unless set), pinned on the training thread.</summary>
    public int? Threads { get; init; }

    /// <summary>Throws <see cref="MiniGptConfigurationException"/> for options that cannot describe a run.</summary>
    internal void Validate()
    {
        static void Positive(string name, double v)
        {
            if (!(v > 0)) throw new MiniGptConfigurationException($"Vision pretraining: {name} must be positive (got {v}).");
        }
        Positive(nameof(ImageSize), ImageSize);
        Positive(nameof(PatchSize), PatchSize);
        Positive(nameof(Steps), Steps);
        Positive(nameof(BatchSize), BatchSize);
        Positive(nameof(LearningRate), LearningRate);
        if (!(PatchLossWeight >= 0)) throw new MiniGptConfigurationException($"Vision pretraining: PatchLossWeight must be zero or positive (got {PatchLossWeight}).");
        if (ImageSize % PatchSize != 0)
            throw new MiniGptConfigurationException($"Vision pretraining: the image size {ImageSize} is not a multiple of the patch size {PatchSize}.");
    }
}
