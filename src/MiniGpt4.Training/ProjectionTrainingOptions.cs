namespace MiniGpt4.Training;

/// <summary>Which of MiniGPT-4's two training stages a run follows (docs/training.md).</summary>
public enum TrainingStage
{
    /// <summary>Image-caption pairs: BOS, the image embeddings, then the caption and <c>"\n"</c> as the target (no prompt text).</summary>
    Stage1 = 1,

    /// <summary>Conversations rendered with the variant's chat template, the assistant answers and their end symbol as the target.</summary>
    Stage2 = 2,
}

/// <summary>
/// Options of a projection training run. Defaults are the reference's configuration for the stage
/// (<c>train_configs/minigpt4_stage{1,2}_*.yaml</c>): AdamW (β 0.9/0.999, weight decay 0.05 on the weight, none on
/// the bias), linear warm-up from 1e-6, then cosine decay to the minimum learning rate over the run.
/// </summary>
public sealed record ProjectionTrainingOptions
{
    /// <summary>The stage (prompt layout, end symbol, text length and learning-rate defaults).</summary>
    public TrainingStage Stage { get; init; } = TrainingStage.Stage1;

    /// <summary>Optimizer steps of the whole run (the schedule spans them; a resumed run continues to this step).</summary>
    public int Steps { get; init; } = 100;

    /// <summary>Examples per step (the reference: 64 in stage 1, 12 in stage 2).</summary>
    public int BatchSize { get; init; } = 4;

    /// <summary>Peak learning rate (<c>init_lr</c>); null: 1e-4 in stage 1, 3e-5 in stage 2.</summary>
    public double? LearningRate { get; init; }

    /// <summary>Learning rate at the end of the cosine decay (<c>min_lr</c>); null: 8e-5 in stage 1, 1e-5 in stage 2 (scaled with <see cref="LearningRate"/> when that is given).</summary>
    public double? MinLearningRate { get; init; }

    /// <summary>Learning rate the warm-up starts from (<c>warmup_lr</c>).</summary>
    public double WarmupLearningRate { get; init; } = 1e-6;

    /// <summary>Warm-up steps; null: a twentieth of <see cref="Steps"/> (the reference warms up over its first epoch: 5000 of 20000 steps in stage 1, 200 of 1000 in stage 2).</summary>
    public int? WarmupSteps { get; init; }

    /// <summary>AdamW weight decay of <c>llama_proj.weight</c> (the bias has none, as in the reference).</summary>
    public double WeightDecay { get; init; } = 0.05;

    /// <summary>AdamW β1.</summary>
    public double Beta1 { get; init; } = 0.9;

    /// <summary>AdamW β2.</summary>
    public double Beta2 { get; init; } = 0.999;

    /// <summary>AdamW ε.</summary>
    public double Epsilon { get; init; } = 1e-8;

    /// <summary>Seed of the example order (and of <see cref="ResetProjection"/>'s initialisation).</summary>
    public int Seed { get; init; } = 42;

    /// <summary>Target tokens kept per example (<c>max_txt_len</c>); null: 32 in stage 1, 160 in stage 2.</summary>
    public int? MaxTextTokens { get; init; }

    /// <summary>Start from a freshly initialised projection (PyTorch's <c>nn.Linear</c> init, seeded) instead of the manifest's checkpoint: stage 1 from scratch.</summary>
    public bool ResetProjection { get; init; }

    /// <summary>Write the checkpoint, optimizer state and step every this many steps (and at the end).</summary>
    public int CheckpointEvery { get; init; } = 50;

    /// <summary>
    /// Intra-op threads for libtorch (null: the process-wide setting, libtorch's default unless set), pinned on the
    /// training thread so that every run of the same options rounds alike.
    /// </summary>
    public int? Threads { get; init; }

    internal double PeakLearningRate => LearningRate ?? (Stage == TrainingStage.Stage1 ? 1e-4 : 3e-5);

    internal double FinalLearningRate => MinLearningRate ?? PeakLearningRate * (Stage == TrainingStage.Stage1 ? 0.8 : 1.0 / 3);

    internal int Warmup => WarmupSteps ?? Steps / 20;

    internal int TextTokens => MaxTextTokens ?? (Stage == TrainingStage.Stage1 ? 32 : 160);

    /// <summary>Throws <see cref="MiniGptConfigurationException"/> naming the first bad value.</summary>
    public void Validate()
    {
        static void Check(bool ok, string what)
        {
            if (!ok) throw new MiniGptConfigurationException($"Training option {what}.");
        }
        Check(Stage is TrainingStage.Stage1 or TrainingStage.Stage2, $"Stage must be 1 or 2 (got {(int)Stage})");
        Check(Steps >= 1, $"Steps must be at least 1 (got {Steps})");
        Check(BatchSize >= 1, $"BatchSize must be at least 1 (got {BatchSize})");
        Check(PeakLearningRate > 0 && double.IsFinite(PeakLearningRate), $"LearningRate must be positive (got {PeakLearningRate})");
        Check(FinalLearningRate >= 0 && FinalLearningRate <= PeakLearningRate, $"MinLearningRate must be in [0, LearningRate] (got {FinalLearningRate})");
        Check(WarmupLearningRate >= 0 && double.IsFinite(WarmupLearningRate), $"WarmupLearningRate must be non-negative (got {WarmupLearningRate})");
        Check(Warmup >= 0, $"WarmupSteps must be non-negative (got {Warmup})");
        Check(WeightDecay >= 0, $"WeightDecay must be non-negative (got {WeightDecay})");
        Check(Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1, $"Beta1 and Beta2 must be in [0, 1) (got {Beta1}, {Beta2})");
        Check(Epsilon > 0, $"Epsilon must be positive (got {Epsilon})");
        Check(TextTokens >= 1, $"MaxTextTokens must be at least 1 (got {TextTokens})");
        Check(CheckpointEvery >= 1, $"CheckpointEvery must be at least 1 (got {CheckpointEvery})");
        Check(Threads is null or >= 1, $"Threads must be at least 1 (got {Threads})");
    }
}

/// <summary>One progress report: after each optimizer step.</summary>
/// <param name="Step">Steps done (1-based: the step just taken).</param>
/// <param name="TotalSteps">Steps of the run.</param>
/// <param name="Loss">The step's loss (mean cross-entropy over the batch's target tokens).</param>
/// <param name="LearningRate">The learning rate the step used.</param>
/// <param name="StepsPerSecond">Steps per second since this run (or resumption) started.</param>
/// <param name="EstimatedRemaining">Time left at that rate.</param>
public sealed record TrainingProgress(int Step, int TotalSteps, double Loss, double LearningRate, double StepsPerSecond, TimeSpan EstimatedRemaining);

/// <summary>What a finished run wrote.</summary>
/// <param name="Steps">Steps done in all (resumed runs included).</param>
/// <param name="FinalLoss">The last step's loss (NaN when the run had nothing left to do).</param>
/// <param name="CheckpointPath">The projection checkpoint (<c>llama_proj.pth</c>, the release layout <c>{"model": {"llama_proj.weight", "llama_proj.bias"}}</c>).</param>
/// <param name="ManifestPath">A <c>minigpt4.json</c> beside it: the trained model's manifest (the source model's files, this projection).</param>
public sealed record TrainingResult(int Steps, double FinalLoss, string CheckpointPath, string ManifestPath);
