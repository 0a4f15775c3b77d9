using System.Text;

namespace MiniGpt4.SyntheticWorld;

/// <summary>The four kinds of question.</summary>
public enum QuestionKind
{
    /// <summary>"How many shapes are there?" (always asked).</summary>
    Count,
    /// <summary>"What colour is the &lt;shape&gt;?" (only when that shape occurs once).</summary>
    Colour,
    /// <summary>"What shape is the &lt;colour&gt; object?" (only when that colour occurs once).</summary>
    Shape,
    /// <summary>"Describe this image." (only with up to three shapes).</summary>
    Describe,
}

/// <summary>What a correct answer to one question must say.</summary>
/// <param name="Count">The number of shapes in the image.</param>
/// <param name="Colours">Every colour present (each once).</param>
/// <param name="Shapes">Every shape present (each once).</param>
/// <param name="Colour">For a colour question: the asked shape's colour; otherwise null.</param>
/// <param name="Shape">For a shape question: the asked colour's shape; otherwise null.</param>
public sealed record AnswerFacts(int Count, IReadOnlyList<ShapeColour> Colours, IReadOnlyList<ShapeKind> Shapes, ShapeColour? Colour = null, ShapeKind? Shape = null)
{
    /// <summary>The facts of a scene, for a question that asks no particular object.</summary>
    public static AnswerFacts Of(Scene scene)
    {
        var f = scene.Facts;
        return new AnswerFacts(f.Count, f.Colours, f.Shapes);
    }
}

/// <summary>One question about a scene with its reference answer and the facts the answer checker uses.</summary>
/// <param name="Kind">The question's kind.</param>
/// <param name="Question">The question, worded exactly as the world defines it.</param>
/// <param name="Answer">The reference answer: a short sentence that names only what is asked.</param>
/// <param name="Facts">What any correct answer must say.</param>
public sealed record WorldQuestion(QuestionKind Kind, string Question, string Answer, AnswerFacts Facts);

/// <summary>
/// The questions and answers of the world: the four wordings, when each may be asked, the reference answers
/// (count: "There are two shapes."; colour: "The circle is red."; shape: "The red object is a circle.";
/// description: "A red circle and an orange triangle on a grey background.") and the stage-1 caption (the description).
/// </summary>
public static class QuestionGenerator
{
    /// <summary>"How many shapes are there?"</summary>
    public const string CountQuestion = "How many shapes are there?";

    /// <summary>"Describe this image."</summary>
    public const string DescribeQuestion = "Describe this image.";

    /// <summary>Descriptions are asked for up to this many shapes.</summary>
    public const int MaxShapesToDescribe = 3;

    /// <summary>"What colour is the &lt;shape&gt;?"</summary>
    public static string ColourQuestion(ShapeKind shape) => $"What colour is the {Palette.Word(shape)}?";

    /// <summary>"What shape is the &lt;colour&gt; object?"</summary>
    public static string ShapeQuestion(ShapeColour colour) => $"What shape is the {Palette.Word(colour)} object?";

    /// <summary>Every question the scene allows, each target once, in kind order.</summary>
    public static IReadOnlyList<WorldQuestion> All(Scene scene)
    {
        var all = new List<WorldQuestion> { Count(scene) };
        foreach (var shape in UniqueShapes(scene)) all.Add(ColourOf(scene, shape));
        foreach (var colour in UniqueColours(scene)) all.Add(ShapeOf(scene, colour));
        if (scene.Objects.Count <= MaxShapesToDescribe) all.Add(Describe(scene));
        return all;
    }

    /// <summary>The kinds of question the scene allows.</summary>
    public static IReadOnlyList<QuestionKind> AllowedKinds(Scene scene) => All(scene).Select(q => q.Kind).Distinct().ToArray();

    /// <summary>A question of <paramref name="kind"/> (which the scene must allow), its target picked by <paramref name="random"/>.</summary>
    public static WorldQuestion Ask(Scene scene, QuestionKind kind, WorldRandom random)
    {
        var candidates = All(scene).Where(q => q.Kind == kind).ToArray();
        if (candidates.Length == 0) throw new ArgumentException($"the scene does not allow a {kind} question", nameof(kind));
        return random.Pick(candidates);
    }

    /// <summary>One question: a kind the scene allows, then a target, both uniformly.</summary>
    public static WorldQuestion Ask(Scene scene, WorldRandom random) => Ask(scene, random.Pick(AllowedKinds(scene)), random);

    /// <summary>The count question and its answer.</summary>
    public static WorldQuestion Count(Scene scene)
    {
        var n = scene.Objects.Count;
        var answer = n == 1 ? "There is one shape." : $"There are {Palette.NumberWords[n]} shapes.";
        return new WorldQuestion(QuestionKind.Count, CountQuestion, answer, AnswerFacts.Of(scene));
    }

    /// <summary>
    /// The caption of a scene (stage 1) and the answer to "Describe this image.": every colour-and-shape group in the
    /// scene code's slot order (<see cref="SceneCode.Groups"/>), "a red circle" for one object and "red circles" for
    /// several (the code says one or several, not how many), then the background.
    /// </summary>
    public static string Caption(Scene scene)
    {
        var groups = SceneCode.Groups(scene)
            .Select(g => g.Count() == 1
                ? $"{Article(Palette.Word(g.Key.Colour))} {Palette.Word(g.Key.Colour)} {Palette.Word(g.Key.Shape)}"
                : $"{Palette.Word(g.Key.Colour)} {Palette.Plural(g.Key.Shape)}")
            .ToArray();
        var list = groups.Length == 1 ? groups[0] : string.Join(", ", groups[..^1]) + " and " + groups[^1];
        var sentence = new StringBuilder(list).Append(" on ").Append(Article(Palette.Word(scene.Background))).Append(' ')
            .Append(Palette.Word(scene.Background)).Append(" background.");
        sentence[0] = char.ToUpperInvariant(sentence[0]);
        return sentence.ToString();
    }

    private static WorldQuestion ColourOf(Scene scene, ShapeKind shape)
    {
        var colour = scene.Objects.Single(o => o.Shape == shape).Colour;
        return new WorldQuestion(QuestionKind.Colour, ColourQuestion(shape), $"The {Palette.Word(shape)} is {Palette.Word(colour)}.",
            AnswerFacts.Of(scene) with { Colour = colour });
    }

    private static WorldQuestion ShapeOf(Scene scene, ShapeColour colour)
    {
        var shape = scene.Objects.Single(o => o.Colour == colour).Shape;
        return new WorldQuestion(QuestionKind.Shape, ShapeQuestion(colour), $"The {Palette.Word(colour)} object is a {Palette.Word(shape)}.",
            AnswerFacts.Of(scene) with { Shape = shape });
    }

    private static WorldQuestion Describe(Scene scene) =>
        new(QuestionKind.Describe, DescribeQuestion, Caption(scene), AnswerFacts.Of(scene));

    private static IEnumerable<ShapeKind> UniqueShapes(Scene scene) =>
        scene.Objects.GroupBy(o => o.Shape).Where(g => g.Count() == 1).Select(g => g.Key).Order();

    private static IEnumerable<ShapeColour> UniqueColours(Scene scene) =>
        scene.Objects.GroupBy(o => o.Colour).Where(g => g.Count() == 1).Select(g => g.Key).Order();

    private static string Article(string word) => "aeiou".Contains(word[0]) ? "an" : "a";
}
