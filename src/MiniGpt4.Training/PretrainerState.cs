using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Training;

/// <summary>
/// The resumable state of a language pretraining run beside its output: every weight in float32 and AdamW's moments
/// (<c>pretrain-state.safetensors</c>), and the step, the time spent and the options it ran with (<c>pretrain-state.json</c>).
/// Written every <see cref="LanguagePretrainingOptions.CheckpointEvery"/> steps and removed when the run finishes.
/// </summary>
internal static class PretrainerState
{
    public const string StateFileName = "pretrain-state.safetensors";
    public const string StepFileName = "pretrain-state.json";

    public static void Save(string dir, LanguagePretrainingOptions options, IReadOnlyList<(string Name, Parameter Parameter)> parameters, AdamW adam, TimeSpan elapsed)
    {
        using var noGrad = no_grad();
        SafetensorsWriter.Write(Path.Combine(dir, StateFileName),
            parameters.Select(p => new KeyValuePair<string, Tensor>(p.Name, p.Parameter.detach())).Concat(adam.State));
        var json = new JsonObject
        {
            ["step"] = adam.StepCount,
            ["seconds"] = Math.Round(elapsed.TotalSeconds, 3),
            ["run"] = Identity(options),
        };
        File.WriteAllText(Path.Combine(dir, StepFileName), json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
    }

    /// <summary>Removes the saved state (a finished run).</summary>
    public static void Delete(string dir)
    {
        File.Delete(Path.Combine(dir, StateFileName));
        File.Delete(Path.Combine(dir, StepFileName));
    }

    /// <summary>Loads the saved weights and moments; returns the step to continue from and the time spent so far.</summary>
    public static (int Step, TimeSpan Elapsed) Restore(string dir, LanguagePretrainingOptions options, IReadOnlyList<(string Name, Parameter Parameter)> parameters, AdamW adam)
    {
        var root = TrainerState.ReadSavedRun(dir, StepFileName, StateFileName, "pretraining", Identity(options));
        var stepFile = Path.Combine(dir, StepFileName);
        var stateFile = Path.Combine(dir, StateFileName);
        var step = root["step"]?.GetValue<int>() ?? throw new MiniGptConfigurationException($"'{stepFile}' has no step.");
        var seconds = root["seconds"]?.GetValue<double>() ?? 0;
        using var source = WeightFiles.Open(stateFile);
        using var noGrad = no_grad();
        foreach (var (name, p) in parameters) source.ReadInto(name, p);
        foreach (var (key, moment) in adam.State) source.ReadInto(key, moment);
        adam.StepCount = step;
        return (step, TimeSpan.FromSeconds(seconds));
    }

    // Everything the schedule, the data order and the weights depend on (not the thread count).
    private static JsonObject Identity(LanguagePretrainingOptions o) =>
        (JsonObject)JsonSerializer.SerializeToNode(o with { Threads = null, CheckpointEvery = 1 })!;
}
