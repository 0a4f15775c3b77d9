using System.Text.RegularExpressions;

namespace MiniGpt4.SyntheticWorld;

/// <summary>
/// The world's acceptance rules for an answer. Words are read case-insensitively, whole words only; numbers one to
/// four count as words or digits, plurals count as their shape, and the colours are the six object colours (a
/// background's white, grey, cream or black is not one).
/// <list type="bullet">
/// <item>count: the right number, and no other number from one to four;</item>
/// <item>colour: the right colour, and no other colour;</item>
/// <item>shape: the right shape, and no other shape;</item>
/// <item>describe: every colour and every shape present, and no colour that is absent.</item>
/// </list>
/// </summary>
public static partial class AnswerChecker
{
    /// <summary>Whether <paramref name="answer"/> is a correct answer to a question of <paramref name="kind"/> with <paramref name="facts"/>.</summary>
    public static bool IsCorrect(QuestionKind kind, AnswerFacts facts, string answer)
    {
        ArgumentNullException.ThrowIfNull(facts);
        ArgumentNullException.ThrowIfNull(answer);
        var said = Read(answer);
        return kind switch
        {
            QuestionKind.Count => said.Numbers.SetEquals([facts.Count]),
            QuestionKind.Colour => facts.Colour is { } c ? said.Colours.SetEquals([c]) : throw MissingFact(kind, "colour"),
            QuestionKind.Shape => facts.Shape is { } s ? said.Shapes.SetEquals([s]) : throw MissingFact(kind, "shape"),
            QuestionKind.Describe => said.Colours.SetEquals(facts.Colours) && said.Shapes.IsSupersetOf(facts.Shapes),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "unknown question kind"),
        };
    }

    /// <summary>The numbers (1-4), colours and shapes an answer names.</summary>
    public static (HashSet<int> Numbers, HashSet<ShapeColour> Colours, HashSet<ShapeKind> Shapes) Read(string answer)
    {
        var numbers = new HashSet<int>();
        var colours = new HashSet<ShapeColour>();
        var shapes = new HashSet<ShapeKind>();
        foreach (Match m in Words().Matches(answer.ToLowerInvariant()))
        {
            var w = m.Value;
            var n = IndexOfNumber(w);
            if (n > 0) numbers.Add(n);
            if (Palette.TryParseColour(w, out var c)) colours.Add(c);
            if (Palette.TryParseShape(w, out var s)) shapes.Add(s);
        }
        return (numbers, colours, shapes);
    }

    private static int IndexOfNumber(string word)
    {
        for (var n = 1; n <= Palette.MaxShapes; n++)
            if (word == Palette.NumberWords[n] || word == n.ToString(System.Globalization.CultureInfo.InvariantCulture)) return n;
        return 0;
    }

    private static ArgumentException MissingFact(QuestionKind kind, string what) =>
        new($"a {kind} question's facts must name the expected {what}", "facts");

    [GeneratedRegex("[a-z]+|[0-9]+")]
    private static partial Regex Words();
}
