using MiniGpt4.Abstractions;
using MiniGpt4.Prompting;
using MiniGpt4.SyntheticWorld;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.ToyModel;

/// <summary>
/// The bundled toy model (samples/toy-model, in the repository: no ../shared needed) answers from the image: the same
/// question about two images gets two different answers, each correct for its image, and an answer follows the image
/// embeddings spliced into the prompt rather than anything else in it.
/// </summary>
public class ToyModelSeesTests
{
    /// <summary>A world seed no training run uses (the evaluation's held-out seed).</summary>
    private const long HeldOutSeed = 424242;

    private static string Manifest => Path.Combine(Fixtures.RepoRoot, "samples", "toy-model", "minigpt4.json");

    private static ImageInput Image(Scene scene) => ImageInput.FromRgb(scene.Width, scene.Height, SceneRenderer.Render(scene));

    /// <summary>The first two held-out scenes with exactly one circle, of different colours.</summary>
    private static (Scene A, Scene B) TwoScenesWithOneCircleOfDifferentColours()
    {
        Scene? a = null;
        for (var i = 0; ; i++)
        {
            var s = SceneGenerator.Generate(HeldOutSeed, i);
            var circles = s.Objects.Where(o => o.Shape == ShapeKind.Circle).ToArray();
            if (circles.Length != 1) continue;
            if (a is null) a = s;
            else if (circles[0].Colour != a.Objects.Single(o => o.Shape == ShapeKind.Circle).Colour) return (a, s);
        }
    }

    private static WorldQuestion ColourOfCircle(Scene scene) =>
        QuestionGenerator.All(scene).Single(q => q.Kind == QuestionKind.Colour && q.Question == QuestionGenerator.ColourQuestion(ShapeKind.Circle));

    private static readonly GenerationOptions Greedy = new() { Temperature = 0, MaxNewTokens = 24 };

    /// <summary>"What colour is the circle?" about scenes A and B, greedy.</summary>
    private static async Task<(Scene A, Scene B, string AnswerA, string AnswerB)> AskColourOfCircle(MiniGptPipeline pipeline)
    {
        var (a, b) = TwoScenesWithOneCircleOfDifferentColours();
        var question = QuestionGenerator.ColourQuestion(ShapeKind.Circle);
        return (a, b, (await pipeline.AskAsync(Image(a), question, Greedy)).Text, (await pipeline.AskAsync(Image(b), question, Greedy)).Text);
    }

    [Fact]
    public async Task The_same_question_about_two_images_gets_each_images_correct_answer()
    {
        using var pipeline = await MiniGptPipeline.LoadAsync(Manifest);
        var (a, b, answerA, answerB) = await AskColourOfCircle(pipeline);
        Assert.NotEqual(answerA, answerB);
        Assert.True(AnswerChecker.IsCorrect(QuestionKind.Colour, ColourOfCircle(a).Facts, answerA), $"image A: {answerA}");
        Assert.True(AnswerChecker.IsCorrect(QuestionKind.Colour, ColourOfCircle(b).Facts, answerB), $"image B: {answerB}");

        var count = QuestionGenerator.CountQuestion;
        foreach (var scene in new[] { a, b })
        {
            var answer = (await pipeline.AskAsync(Image(scene), count, Greedy)).Text;
            Assert.True(AnswerChecker.IsCorrect(QuestionKind.Count, QuestionGenerator.Count(scene).Facts, answer), $"{scene.Objects.Count} shapes: {answer}");
        }
    }

    /// <summary>The bundled picture, samples/toy-model/example.png: scene 11 of world seed 2026 (no training run uses that seed).</summary>
    private static Scene ExampleScene => SceneGenerator.Generate(2026, 11);

    [Fact]
    public void The_bundled_picture_is_the_world_scene_its_answers_are_judged_by()
    {
        var example = Path.Combine(Fixtures.RepoRoot, "samples", "toy-model", "example.png");
        var decoded = MiniGpt4.Imaging.ImagePreprocessor.Decode(ImageInput.FromBytes(File.ReadAllBytes(example)), new ImageDecodingOptions());
        var scene = ExampleScene;
        Assert.Equal((scene.Width, scene.Height), (decoded.Width, decoded.Height));
        Assert.Equal(SceneRenderer.Render(scene), decoded.Rgb24.ToArray());
    }

    [Fact]
    public async Task The_cli_batch_verb_without_a_model_answers_with_the_bundled_model()
    {
        using var dir = new TempDir();
        var example = Path.Combine(Fixtures.RepoRoot, "samples", "toy-model", "example.png");
        string[] prompts = ["Describe this image.", QuestionGenerator.CountQuestion];
        File.WriteAllLines(dir.File("requests.jsonl"), prompts.Select((p, i) =>
            System.Text.Json.JsonSerializer.Serialize(new { id = $"q{i}", image = example, prompt = p })));
        var (exit, _, stderr) = await CliProcess.RunAsync(null, "batch", "--input", dir.File("requests.jsonl"), "--output", dir.File("answers.jsonl"), "--temperature", "0");
        Assert.True(exit == 0, stderr);
        var answers = File.ReadAllLines(dir.File("answers.jsonl")).Select(l => System.Text.Json.Nodes.JsonNode.Parse(l)!.AsObject()).ToArray();
        Assert.Equal(["q0", "q1"], answers.Select(a => a["id"]!.GetValue<string>()));
        Assert.All(answers, a => Assert.Null(a["error"]));
        var facts = AnswerFacts.Of(ExampleScene);
        Assert.True(AnswerChecker.IsCorrect(QuestionKind.Describe, facts, answers[0]["text"]!.GetValue<string>()), answers[0].ToJsonString());
        Assert.True(AnswerChecker.IsCorrect(QuestionKind.Count, facts, answers[1]["text"]!.GetValue<string>()), answers[1].ToJsonString());
    }

    [Fact]
    public async Task With_another_images_embeddings_spliced_in_the_answer_follows_that_image()
    {
        using var pipeline = await MiniGptPipeline.LoadAsync(Manifest);
        var (_, b, answerA, answerB) = await AskColourOfCircle(pipeline);

        // The conversation of a question about image A, rendered by the engine's prompt builder, with image B's
        // embeddings in the image slot instead of A's.
        var conversation = new Conversation();
        conversation.AddImage();
        conversation.Ask(QuestionGenerator.ColourQuestion(ShapeKind.Circle));
        var embeddingsOfB = await pipeline.EncodeImageAsync(Image(b), key: null, CancellationToken.None);
        var turn = pipeline.Prompts.Build(conversation, [embeddingsOfB], Greedy);
        var raw = string.Concat(await pipeline.GenerateAsync(turn.Sequence, turn.Options).Select(u => u.Text).ToListAsync());
        var spliced = raw.Split("###")[0].Trim();

        Assert.Equal(answerB, spliced);
        Assert.NotEqual(answerA, spliced);
        Assert.True(AnswerChecker.IsCorrect(QuestionKind.Colour, ColourOfCircle(b).Facts, spliced), spliced);
    }
}
