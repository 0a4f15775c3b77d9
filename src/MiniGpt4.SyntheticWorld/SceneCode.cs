namespace MiniGpt4.SyntheticWorld;

/// <summary>
/// The scene code: a fixed sequence of <see cref="Length"/> words that says everything a question about a scene may
/// ask. It is the contract between the toy model's two towers: the vision tower's query <c>i</c> learns to predict
/// code word <c>i</c>, and the language model is pretrained with these words in the image slot, so that a linear
/// projection of the Q-Former's 32 outputs can later imitate the embeddings of the 32 code-word tokens.
/// <list type="bullet">
/// <item>position 0: the count word, <c>one</c> to <c>four</c>;</item>
/// <item>positions 1-18: one slot per colour and shape, colour-major in <see cref="Palette.Colours"/> and
/// <see cref="Palette.Shapes"/> order (<see cref="ComboPosition"/>): the combination's word (<c>redcircle</c>) when
/// the scene has one such object, its plural (<c>redcircles</c>) when it has several, <see cref="Pad"/> when none;</item>
/// <item>position 19: the background word, <c>white</c>, <c>grey</c>, <c>cream</c> or <c>black</c>;</item>
/// <item>positions 20-31: <see cref="Pad"/>.</item>
/// </list>
/// A slot per combination (rather than objects in some order) makes each query a presence detector for one thing,
/// which a small vision tower learns far more easily than ordering objects, and it says all the questions need:
/// which colour the only circle has, which shape the only red object has, and what a description lists.
/// Every word is one of <see cref="Vocabulary"/>, and the toy tokenizer encodes each, with SentencePiece's leading
/// space, as exactly one token (<c>▁redcircle</c>).
/// </summary>
public static class SceneCode
{
    /// <summary>The number of words in a code: the Q-Former's query count.</summary>
    public const int Length = 32;

    /// <summary>The position of the count word.</summary>
    public const int CountPosition = 0;

    /// <summary>The number of colour-and-shape slots.</summary>
    public static int ComboCount => Palette.Colours.Count * Palette.Shapes.Count;

    /// <summary>The position of the background word, after the combination slots.</summary>
    public static int BackgroundPosition => 1 + ComboCount;

    /// <summary>The word of an absent combination and of every position after the background.</summary>
    public const string Pad = "none";

    /// <summary>The position of the slot of <paramref name="colour"/> and <paramref name="shape"/>.</summary>
    public static int ComboPosition(ShapeColour colour, ShapeKind shape) => 1 + (int)colour * Palette.Shapes.Count + (int)shape;

    /// <summary>The code word of one object of <paramref name="colour"/> and <paramref name="shape"/>: <c>redcircle</c>.</summary>
    public static string ComboWord(ShapeColour colour, ShapeKind shape) => Palette.Word(colour) + Palette.Word(shape);

    /// <summary>The code word of several objects of <paramref name="colour"/> and <paramref name="shape"/>: <c>redcircles</c>.</summary>
    public static string ComboPluralWord(ShapeColour colour, ShapeKind shape) => Palette.Word(colour) + Palette.Plural(shape);

    /// <summary>Every colour-and-shape combination in slot order (colour-major). Captions list objects in this order too.</summary>
    public static IReadOnlyList<(ShapeColour Colour, ShapeKind Shape)> Combos { get; } =
        Palette.Colours.SelectMany(c => Palette.Shapes.Select(s => (c, s))).ToArray();

    /// <summary>
    /// Every code word, in a fixed order: the count words one to four, the singular then plural combination words in
    /// slot order, the four backgrounds, then <see cref="Pad"/> (45 words). A classifier over code words uses these indices.
    /// </summary>
    public static IReadOnlyList<string> Vocabulary { get; } =
    [
        .. Palette.NumberWords.Skip(Palette.MinShapes).Take(Palette.MaxShapes),
        .. Combos.Select(c => ComboWord(c.Colour, c.Shape)),
        .. Combos.Select(c => ComboPluralWord(c.Colour, c.Shape)),
        .. Palette.Backgrounds.Select(Palette.Word),
        Pad,
    ];

    /// <summary>The index in <see cref="Vocabulary"/> of <paramref name="word"/>.</summary>
    /// <exception cref="ArgumentException">The word is not a code word.</exception>
    public static int IndexOf(string word)
    {
        for (var i = 0; i < Vocabulary.Count; i++)
            if (Vocabulary[i] == word) return i;
        throw new ArgumentException($"'{word}' is not a scene-code word", nameof(word));
    }

    /// <summary>A scene's objects grouped by colour and shape, the groups in slot order (<see cref="Combos"/>).</summary>
    public static IReadOnlyList<IGrouping<(ShapeColour Colour, ShapeKind Shape), SceneObject>> Groups(Scene scene)
    {
        ArgumentNullException.ThrowIfNull(scene);
        return scene.Objects.GroupBy(o => (o.Colour, o.Shape)).OrderBy(g => ComboPosition(g.Key.Colour, g.Key.Shape)).ToArray();
    }

    /// <summary>The <see cref="Length"/> code words of <paramref name="scene"/>.</summary>
    public static IReadOnlyList<string> Words(Scene scene)
    {
        var words = Enumerable.Repeat(Pad, Length).ToArray();
        words[CountPosition] = Palette.NumberWords[scene.Objects.Count];
        foreach (var g in Groups(scene))
            words[ComboPosition(g.Key.Colour, g.Key.Shape)] = g.Count() == 1 ? ComboWord(g.Key.Colour, g.Key.Shape) : ComboPluralWord(g.Key.Colour, g.Key.Shape);
        words[BackgroundPosition] = Palette.Word(scene.Background);
        return words;
    }

    /// <summary>The indices in <see cref="Vocabulary"/> of <paramref name="scene"/>'s code words (the vision tower's targets).</summary>
    public static IReadOnlyList<int> Indices(Scene scene) => Words(scene).Select(IndexOf).ToArray();
}
