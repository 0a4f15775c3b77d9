namespace MiniGpt4.Training;

/// <summary>
/// Options of <see cref="LanguagePretrainer"/>: the toy language model's size, the optimizer and the data. The defaults
/// train the bundled toy model's language side (docs/toy-model.md).
/// </summary>
public sealed record LanguagePretrainingOptions
{
    /// <summary>Optimizer steps.</summary>
    public int Steps { get; init; } = 2000;

    /// <summary>Sequences per step.</summary>
    public int BatchSize { get; init; } = 16;

    /// <summary>Peak learning rate (after the warm-up, then a cosine decay to <see cref="MinLearningRate"/>).</summary>
    public double LearningRate { get; init; } = 1e-3;

    /// <summary>The learning rate at the last step.</summary>
    public double MinLearningRate { get; init; } = 1e-4;

    /// <summary>Linear warm-up steps from zero.</summary>
    public int WarmupSteps { get; init; } = 30;

    /// <summary>AdamW's decoupled weight decay, on the matrices (not on the norms).</summary>
    public double WeightDecay { get; init; } = 0.01;

    /// <summary>Gradients are clipped to this global norm.</summary>
    public double GradientClip { get; init; } = 1.0;

    /// <summary>Seed of the initial weights and of the noise.</summary>
    public int Seed { get; init; } = 1;

    /// <summary>The synthetic world's seed of the training scenes (held-out evaluation uses another).</summary>
    public long WorldSeed { get; init; } = 1000;

    /// <summary>The share of stage-1 (caption) sequences; the rest are stage-2 questions.</summary>
    public double CaptionShare { get; init; } = 0.25;

    /// <summary>
    /// Standard deviation of Gaussian noise added to the image slot's embeddings, relative to their root mean square
    /// (0: none). A little noise makes the model read approximate code embeddings, as a trained projection gives.
    /// </summary>
    public double ImageSlotNoise { get; init; } = 0.1;

    /// <summary>Model width (<c>hidden_size</c>).</summary>
    public int HiddenSize { get; init; } = 128;

    /// <summary>MLP width (<c>intermediate_size</c>).</summary>
    public int IntermediateSize { get; init; } = 352;

    /// <summary>Decoder layers.</summary>
    public int Layers { get; init; } = 4;

    /// <summary>Attention heads.</summary>
    public int Heads { get; init; } = 4;

    /// <summary><c>max_position_embeddings</c> of the written config (rotary: no weights depend on it).</summary>
    public int MaxPositions { get; init; } = 2048;

    /// <summary>Write the weights in bfloat16 (half the size; the engine's default dtype) instead of float32.</summary>
    public bool SaveBFloat16 { get; init; } = true;

    /// <summary>Save the resumable state every this many steps (and at the end).</summary>
    public int CheckpointEvery { get; init; } = 50;

    /// <summary>
    /// Intra-op threads for libtorch (null: the process-wide setting, libtorch's default unless set), pinned on the
    /// training thread. Not part of a run's identity for resuming; a run resumed with another count rounds differently.
    /// </summary>
    public int? Threads { get; init; }

    /// <summary>Throws <see cref="MiniGptConfigurationException"/> naming the first bad value.</summary>
    public void Validate()
    {
        static void Check(bool ok, string what)
        {
            if (!ok) throw new MiniGptConfigurationException($"Language pretraining option {what}.");
        }
        Check(Steps >= 1, $"Steps must be at least 1 (got {Steps})");
        Check(BatchSize >= 1, $"BatchSize must be at least 1 (got {BatchSize})");
        Check(LearningRate > 0 && double.IsFinite(LearningRate), $"LearningRate must be positive (got {LearningRate})");
        Check(MinLearningRate >= 0 && MinLearningRate <= LearningRate, $"MinLearningRate must be in [0, LearningRate] (got {MinLearningRate})");
        Check(WarmupSteps >= 0, $"WarmupSteps must be non-negative (got {WarmupSteps})");
        Check(WeightDecay >= 0, $"WeightDecay must be non-negative (got {WeightDecay})");
        Check(GradientClip > 0, $"GradientClip must be positive (got {GradientClip})");
        Check(CaptionShare is >= 0 and <= 1, $"CaptionShare must be in [0, 1] (got {CaptionShare})");
        Check(ImageSlotNoise >= 0, $"ImageSlotNoise must be non-negative (got {ImageSlotNoise})");
        Check(HiddenSize >= 8 && Heads >= 1 && HiddenSize % Heads == 0 && HiddenSize / Heads % 2 == 0,
            $"HiddenSize must be a multiple of Heads with an even head size (got {HiddenSize}, {Heads})");
        Check(IntermediateSize >= 1 && Layers >= 1, $"IntermediateSize and Layers must be positive (got {IntermediateSize}, {Layers})");
        Check(MaxPositions >= 256, $"MaxPositions must be at least 256 (got {MaxPositions})");
        Check(CheckpointEvery >= 1, $"CheckpointEvery must be at least 1 (got {CheckpointEvery})");
        Check(Threads is null or >= 1, $"Threads must be at least 1 (got {Threads})");
    }
}

/// <summary>What a finished run wrote and measured.</summary>
/// <param name="Directory">The language model folder: <c>config.json</c>, <c>model.safetensors</c>, <c>tokenizer.model</c>.</param>
/// <param name="Steps">Steps done.</param>
/// <param name="FinalLoss">The last step's loss.</param>
/// <param name="Elapsed">Training time (model creation to the folder written), summed over resumed sessions.</param>
public sealed record LanguagePretrainingResult(string Directory, int Steps, double FinalLoss, TimeSpan Elapsed);

/// <summary>Correct answers of one question kind.</summary>
/// <param name="Correct">Answers <see cref="SyntheticWorld.AnswerChecker"/> accepts.</param>
/// <param name="Total">Questions asked.</param>
public sealed record KindScore(int Correct, int Total)
{
    /// <summary>Correct / total (0 when nothing was asked).</summary>
    public double Accuracy => Total == 0 ? 0 : (double)Correct / Total;
}
