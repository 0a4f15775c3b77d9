using System.Text.Json;
using System.Text.Json.Nodes;
using MiniGpt4.Runtime;
using MiniGpt4.SyntheticWorld;
using MiniGpt4.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Training;

/// <summary>
/// Puts a toy MiniGPT-4 together from its pretrained parts (docs/toy-model.md): the vision tower and Q-Former of a
/// <see cref="VisionPretrainer"/>, a language model folder pretrained with the scene code in the image slot, and a
/// projection; then trains the projection on synthetic-world data, stage 1 then stage 2, with the existing
/// <see cref="ProjectionTrainer"/>. The folder is a <c>minigpt4-vicuna0</c> model in the release layouts with relative
/// paths, so it can be moved or bundled.
/// </summary>
public static class ToyModelBuilder
{
    /// <summary>The manifest's name in the model folder.</summary>
    public const string ManifestFileName = "minigpt4.json";

    /// <summary>The language model's sub-folder.</summary>
    public const string LlmFolderName = "llama";

    /// <summary>The projection checkpoint in the model folder.</summary>
    public const string ProjectionFileName = ProjectionTrainer.CheckpointFileName;

    /// <summary>World seeds: vision pretraining's images, the projection fit's, stage 1's and stage 2's, and the held-out evaluation seed none of them uses.</summary>
    public const long VisionSeed = 1, FitSeed = 7, Stage1Seed = 11, Stage2Seed = 12, VisionEvalSeed = 999, HeldOutSeed = 424242;

    /// <summary>
    /// The bundled toy model's projection stages: steps of stage 1 and stage 2 and world images per stage (docs/toy-model.md;
    /// 150 stage-2 steps on 600 images left held-out count answers at 84-86 %).
    /// </summary>
    public const int Stage1Steps = 150, Stage2Steps = 600, ImagesPerStage = 2400;

    /// <summary>
    /// Writes the model folder <paramref name="folder"/>: the vision tower and Q-Former of <paramref name="vision"/>, a copy
    /// of the language model folder <paramref name="llmFolder"/>, a projection fitted by ridge regression from the Q-Former's
    /// outputs on <paramref name="fitImages"/> images of world <paramref name="fitSeed"/> to the embeddings of their
    /// scene-code words (the tokens the language model saw in the image slot), and the manifest. Returns the manifest's path.
    /// </summary>
    /// <exception cref="MiniGptConfigurationException">A code word is not one token of the language model's tokenizer.</exception>
    public static string Assemble(VisionPretrainer vision, string llmFolder, string folder, int fitImages = 256, long fitSeed = FitSeed)
    {
        ArgumentNullException.ThrowIfNull(vision);
        Directory.CreateDirectory(folder);
        var sections = vision.Save(folder);
        var llm = Path.Combine(folder, LlmFolderName);
        if (Path.GetFullPath(llm) != Path.GetFullPath(llmFolder))
        {
            Directory.CreateDirectory(llm);
            foreach (var file in Directory.GetFiles(llmFolder)) File.Copy(file, Path.Combine(llm, Path.GetFileName(file)), overwrite: true);
        }
        FitProjection(vision, llm, Path.Combine(folder, ProjectionFileName), fitImages, fitSeed);
        var manifest = new JsonObject
        {
            ["variant"] = "minigpt4-vicuna0",
            ["vision"] = sections["vision"]!.DeepClone(),
            ["qformer"] = sections["qformer"]!.DeepClone(),
            ["llm"] = new JsonObject { ["path"] = LlmFolderName },
            ["projection"] = new JsonObject { ["checkpoint"] = ProjectionFileName },
        };
        var path = Path.Combine(folder, ManifestFileName);
        File.WriteAllText(path, manifest.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        return path;
    }

    /// <summary>The language model's token id of each scene-code word (SentencePiece's leading space included).</summary>
    internal static Dictionary<string, int> CodeTokenIds(string llmFolder)
    {
        var tokenizer = MiniGptTokenizer.Load(Path.Combine(llmFolder, "tokenizer.model"));
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var word in SceneCode.Vocabulary)
        {
            var t = tokenizer.Encode(word, addBos: false);
            if (t.Count != 1)
                throw new MiniGptConfigurationException($"The scene-code word '{word}' is {t.Count} tokens for the tokenizer in {llmFolder}; the toy model needs one.");
            ids[word] = t[0];
        }
        return ids;
    }

    /// <summary>Ridge regression (λ = 1e-3 · mean diagonal) from the Q-Former outputs to the code words' token embeddings, written as <c>llama_proj</c>.</summary>
    private static void FitProjection(VisionPretrainer vision, string llmFolder, string path, int images, long seed)
    {
        var ids = CodeTokenIds(llmFolder);
        using var scope = NewDisposeScope();
        using var weights = WeightFiles.Open(llmFolder);
        var embed = weights.Load("model.embed_tokens.weight", ScalarType.Float64);
        var (features, words) = vision.QueryFeatures(seed, images);
        var x = cat([features.to(ScalarType.Float64), ones([features.shape[0], 1], ScalarType.Float64)], 1);
        var y = embed.index_select(0, tensor(words.Select(w => (long)ids[w]).ToArray()));
        var gram = x.t().matmul(x);
        using var lambda = 1e-3.ToScalar();
        var ridge = gram.diagonal().mean().mul(lambda);
        var solution = linalg.solve(gram.Plus(eye(gram.shape[0], dtype: ScalarType.Float64).mul(ridge)), x.t().matmul(y)); // [H + 1, d]
        var hidden = features.shape[1];
        var weight = solution.narrow(0, 0, hidden).t().contiguous().to(ScalarType.Float32);
        var bias = solution[hidden].contiguous().to(ScalarType.Float32);
        TorchCheckpointWriter.Write(path, [new("llama_proj.weight", weight), new("llama_proj.bias", bias)], underModelKey: true);
    }

    /// <summary>
    /// Writes <paramref name="images"/> images of world <paramref name="seed"/> with their stage-<paramref name="stage"/> file
    /// into <paramref name="workFolder"/>, trains the projection of the model <paramref name="manifestPath"/> on them
    /// (<paramref name="options"/>' stage is set to <paramref name="stage"/>), and copies the trained checkpoint into the
    /// model's folder.
    /// </summary>
    public static async Task<TrainingResult> TrainProjectionAsync(string manifestPath, int stage, int images, long seed, ProjectionTrainingOptions options,
        string workFolder, IProgress<TrainingProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(options);
        var data = Path.Combine(workFolder, $"world-stage{stage}");
        var file = WorldDataset.Write(data, images, seed, stage, cancellationToken: cancellationToken);
        var trainingStage = (TrainingStage)stage;
        var examples = TrainingData.ReadJsonl(file, trainingStage);
        var output = Path.Combine(workFolder, $"projection-stage{stage}");
        using var trainer = await ProjectionTrainer.LoadAsync(manifestPath, options with { Stage = trainingStage }, cancellationToken: cancellationToken).ConfigureAwait(false);
        var result = await trainer.TrainAsync(examples, output, resume: false, progress, cancellationToken).ConfigureAwait(false);
        File.Copy(result.CheckpointPath, Path.Combine(Path.GetDirectoryName(Path.GetFullPath(manifestPath))!, ProjectionFileName), overwrite: true);
        return result;
    }
}
