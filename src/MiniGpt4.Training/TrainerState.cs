using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Training;

/// <summary>
/// What a run keeps in its output folder besides the checkpoint: <c>trainer-state.safetensors</c> (the projection and
/// AdamW's moments in the training dtype) and <c>trainer-state.json</c> (the step and the options the schedule and the
/// example order depend on), and the trained model's manifest.
/// </summary>
internal static class TrainerState
{
    public static void Save(string dir, ProjectionTrainingOptions options, ScalarType dtype, Tensor weight, Tensor bias, AdamW adam)
    {
        using var noGrad = no_grad();
        SafetensorsWriter.Write(Path.Combine(dir, ProjectionTrainer.StateFileName),
            new[] { new KeyValuePair<string, Tensor>("llama_proj.weight", weight.detach()), new("llama_proj.bias", bias.detach()) }.Concat(adam.State));
        var json = new JsonObject
        {
            ["step"] = adam.StepCount,
            ["run"] = Identity(options, dtype),
        };
        WriteText(Path.Combine(dir, ProjectionTrainer.StepFileName), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Loads the saved projection and moments into the given tensors and returns the step to continue from.</summary>
    public static int Restore(string dir, ProjectionTrainingOptions options, ScalarType dtype, Tensor weight, Tensor bias, AdamW adam)
    {
        var root = ReadSavedRun(dir, ProjectionTrainer.StepFileName, ProjectionTrainer.StateFileName, "training", Identity(options, dtype));
        var stepFile = Path.Combine(dir, ProjectionTrainer.StepFileName);
        var stateFile = Path.Combine(dir, ProjectionTrainer.StateFileName);
        var step = root["step"]?.GetValue<int>() ?? throw new MiniGptConfigurationException($"'{stepFile}' has no step.");
        using var source = WeightFiles.Open(stateFile);
        using var noGrad = no_grad();
        source.ReadInto("llama_proj.weight", weight);
        source.ReadInto("llama_proj.bias", bias);
        foreach (var (key, moment) in adam.State) source.ReadInto(key, moment);
        adam.StepCount = step;
        return step;
    }

    /// <summary>
    /// Reads a saved run's step file in <paramref name="dir"/> and checks that it ran with <paramref name="identity"/>;
    /// typed errors when the files are missing, unreadable or from another run. Shared by every resumable trainer.
    /// </summary>
    internal static JsonNode ReadSavedRun(string dir, string stepFileName, string stateFileName, string what, JsonObject identity)
    {
        var stepFile = Path.Combine(dir, stepFileName);
        if (!File.Exists(stepFile) || !File.Exists(Path.Combine(dir, stateFileName)))
            throw new MiniGptConfigurationException($"Cannot resume: '{dir}' holds no saved {what} state ({stepFileName}, {stateFileName}).");
        JsonNode root;
        try
        {
            root = JsonNode.Parse(File.ReadAllText(stepFile)) ?? throw new MiniGptConfigurationException($"'{stepFile}' is empty.");
        }
        catch (JsonException ex)
        {
            throw new MiniGptConfigurationException($"'{stepFile}' is not valid JSON: {ex.Message}", ex);
        }
        var saved = root["run"]?.ToJsonString();
        var now = identity.ToJsonString();
        if (saved != now)
            throw new MiniGptConfigurationException($"Cannot resume: the run in '{dir}' used other options ({saved}) than this one ({now}).");
        return root;
    }

    /// <summary>The options a saved state must match to be resumed (the schedule, order and parameters depend on them).</summary>
    private static JsonObject Identity(ProjectionTrainingOptions o, ScalarType dtype) => new()
    {
        ["stage"] = (int)o.Stage,
        ["steps"] = o.Steps,
        ["batch_size"] = o.BatchSize,
        ["seed"] = o.Seed,
        ["lr"] = o.PeakLearningRate,
        ["min_lr"] = o.FinalLearningRate,
        ["warmup_lr"] = o.WarmupLearningRate,
        ["warmup_steps"] = o.Warmup,
        ["weight_decay"] = o.WeightDecay,
        ["betas"] = new JsonArray(o.Beta1, o.Beta2),
        ["eps"] = o.Epsilon,
        ["max_text_tokens"] = o.TextTokens,
        ["dtype"] = dtype.ToString(),
    };

    /// <summary>
    /// The trained model's manifest: the source manifest's parts (paths made absolute, so the folder can live anywhere)
    /// with <c>projection.checkpoint</c> the new checkpoint beside it.
    /// </summary>
    public static void WriteManifest(string path, ModelManifest m, ModelPreset preset, string checkpoint)
    {
        var root = new JsonObject
        {
            ["variant"] = preset.Name,
            ["vision"] = new JsonObject
            {
                ["checkpoint"] = m.Resolve(m.Vision.Checkpoint),
                ["image_size"] = m.Vision.ImageSize,
                ["patch_size"] = m.Vision.PatchSize,
                ["width"] = m.Vision.Width,
                ["depth"] = m.Vision.Depth,
                ["heads"] = m.Vision.Heads,
                ["mlp_hidden"] = m.Vision.MlpHidden,
            },
            ["llm"] = new JsonObject { ["path"] = m.Resolve(m.Llm.Path) },
            ["projection"] = new JsonObject { ["checkpoint"] = checkpoint },
        };
        if (m.Llm.Tokenizer is { } tok) root["llm"]!["tokenizer"] = m.Resolve(tok);
        if (m.QFormer is { } q)
        {
            var qf = new JsonObject { ["checkpoint"] = m.Resolve(q.Checkpoint), ["num_query_tokens"] = q.NumQueryTokens };
            if (q.Config is { } c) qf["config"] = m.Resolve(c);
            root["qformer"] = qf;
        }
        WriteText(path, root.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
    }

    private static void WriteText(string path, string text)
    {
        var tmp = path + ".tmp";
        File.WriteAllText(tmp, text);
        File.Move(tmp, path, overwrite: true);
    }
}
