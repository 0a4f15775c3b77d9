using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniGpt4.SyntheticWorld;

/// <summary>
/// Writes a data set of the world to a folder: <c>images/NNNNNN.png|.jpg</c>, the training file
/// (<c>stage1.jsonl</c>: <c>{"image", "text"}</c> with the caption; or <c>stage2.jsonl</c>: <c>{"image", "conversation"}</c>
/// with one question of a kind the image allows and its answer), and <c>eval.jsonl</c>: one line per image and allowed
/// kind, <c>{"id", "image", "prompt", "kind", "expected", "facts"}</c>, which is also a request file for the CLI's
/// batch verb. Image paths are relative to the folder. Image <c>i</c> depends only on the seed and <c>i</c>.
/// </summary>
public static class WorldDataset
{
    /// <summary>The image folder inside a data set.</summary>
    public const string ImageFolder = "images";

    /// <summary>The evaluation file's name.</summary>
    public const string EvalFile = "eval.jsonl";

    /// <summary>The training file's name for <paramref name="stage"/> (1 or 2).</summary>
    public static string TrainingFile(int stage) => $"stage{stage}.jsonl";

    private static readonly JsonSerializerOptions JsonOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Writes <paramref name="count"/> images and their files; returns the training file's path.</summary>
    public static string Write(string folder, int count, long seed, int stage, IProgress<int>? progress = null, CancellationToken cancellationToken = default)
        => Write(folder, count, seed, stage, SceneRenderer.Save, progress, cancellationToken);

    /// <summary>
    /// <see cref="Write(string, int, long, int, IProgress{int}?, CancellationToken)"/> with the image files written by
    /// <paramref name="saveImage"/> (scene, path) instead of <see cref="SceneRenderer.Save"/>: held-out images drawn by
    /// other software from the same scenes.
    /// </summary>
    public static string Write(string folder, int count, long seed, int stage, Action<Scene, string> saveImage, IProgress<int>? progress = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(saveImage);
        ArgumentOutOfRangeException.ThrowIfNegative(count);
        if (stage is not (1 or 2)) throw new ArgumentOutOfRangeException(nameof(stage), stage, "the stage is 1 or 2");
        Directory.CreateDirectory(Path.Combine(folder, ImageFolder));
        var trainingPath = Path.Combine(folder, TrainingFile(stage));
        using var training = new StreamWriter(trainingPath);
        using var eval = new StreamWriter(Path.Combine(folder, EvalFile));
        for (var i = 0; i < count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var scene = SceneGenerator.Generate(seed, i);
            var image = $"{ImageFolder}/{i:D6}{scene.Extension}";
            saveImage(scene, Path.Combine(folder, image));
            training.WriteLine(stage == 1 ? Stage1Line(image, scene) : Stage2Line(image, QuestionGenerator.Ask(scene, QuestionRandom(seed, i, TrainingStream))));
            var evalRandom = QuestionRandom(seed, i, EvalStream);
            foreach (var kind in QuestionGenerator.AllowedKinds(scene))
                eval.WriteLine(EvalLine($"{i:D6}-{KindWord(kind)}", image, QuestionGenerator.Ask(scene, kind, evalRandom)));
            progress?.Report(i + 1);
        }
        return trainingPath;
    }

    /// <summary>A stage-1 line: <c>{"image": path, "text": caption}</c>.</summary>
    public static string Stage1Line(string image, Scene scene) =>
        new JsonObject { ["image"] = image, ["text"] = QuestionGenerator.Caption(scene) }.ToJsonString(JsonOptions);

    /// <summary>A stage-2 line: <c>{"image": path, "conversation": [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]}</c>.</summary>
    public static string Stage2Line(string image, WorldQuestion q) => new JsonObject
    {
        ["image"] = image,
        ["conversation"] = new JsonArray(
            new JsonObject { ["from"] = "human", ["value"] = q.Question },
            new JsonObject { ["from"] = "gpt", ["value"] = q.Answer }),
    }.ToJsonString(JsonOptions);

    /// <summary>An evaluation line: <c>{"id", "image", "prompt", "kind", "expected", "facts"}</c>.</summary>
    public static string EvalLine(string id, string image, WorldQuestion q) => new JsonObject
    {
        ["id"] = id,
        ["image"] = image,
        ["prompt"] = q.Question,
        ["kind"] = KindWord(q.Kind),
        ["expected"] = q.Answer,
        ["facts"] = FactsToJson(q.Facts),
    }.ToJsonString(JsonOptions);

    /// <summary>The word for a kind in the files: count, colour, shape, describe.</summary>
    public static string KindWord(QuestionKind kind) => kind.ToString().ToLowerInvariant();

    /// <summary>The kind a word names.</summary>
    public static QuestionKind ParseKind(string word)
    {
        foreach (var k in Enum.GetValues<QuestionKind>())
            if (KindWord(k) == word) return k;
        throw new FormatException($"unknown question kind '{word}'");
    }

    /// <summary>Facts as JSON: <c>{"count": 2, "colours": ["red"], "shapes": ["circle", "square"], "colour": "red", "shape": null}</c>.</summary>
    public static JsonObject FactsToJson(AnswerFacts facts) => new()
    {
        ["count"] = facts.Count,
        ["colours"] = new JsonArray(facts.Colours.Select(c => (JsonNode)Palette.Word(c)).ToArray()),
        ["shapes"] = new JsonArray(facts.Shapes.Select(s => (JsonNode)Palette.Word(s)).ToArray()),
        ["colour"] = facts.Colour is { } c ? Palette.Word(c) : null,
        ["shape"] = facts.Shape is { } s ? Palette.Word(s) : null,
    };

    /// <summary>Facts read back from <see cref="FactsToJson"/>'s form.</summary>
    public static AnswerFacts FactsFromJson(JsonNode node)
    {
        static ShapeColour Colour(string w) => Palette.TryParseColour(w, out var c) ? c : throw new FormatException($"unknown colour '{w}'");
        static ShapeKind Shape(string w) => Palette.TryParseShape(w, out var s) ? s : throw new FormatException($"unknown shape '{w}'");
        return new AnswerFacts(
            node["count"]!.GetValue<int>(),
            node["colours"]!.AsArray().Select(n => Colour(n!.GetValue<string>())).ToArray(),
            node["shapes"]!.AsArray().Select(n => Shape(n!.GetValue<string>())).ToArray(),
            node["colour"] is { } c ? Colour(c.GetValue<string>()) : null,
            node["shape"] is { } s ? Shape(s.GetValue<string>()) : null);
    }

    // The scene, the training question and the evaluation questions of an image each draw from a stream of their own,
    // so that the stage does not change the images or the evaluation file.
    private const long TrainingStream = 0x5157_4F52_4C44L, EvalStream = 0x4557_4F52_4C44L;

    private static WorldRandom QuestionRandom(long seed, int index, long stream) => WorldRandom.ForItem(seed ^ stream, index);
}
