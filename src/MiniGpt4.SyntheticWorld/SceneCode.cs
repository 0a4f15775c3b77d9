namespace MiniGpt4.SyntheticWorld;

/// <summary>
/// The scene code: a fixed sequence of <see cref="Length"/> words that says everything a question about a scene may
/// ask. It is the contract between the toy model's two towers: the vision tower's query <c>i</c> learns to predict
/// code word <c>i</c>, and the language model is pretrained with these words in the image slot, so that a linear
/// projection of the Q-Former's 32 outputs can later imitate the embeddings of the 32 code-word tokens.
/// <list type="bullet">
/// <item>position 0: the count word, <c>one</c> to <c>four</c>;</item>
/// <item>positions 1 + 2k and 2 + 2k (k = 0..3): object k's colour word and shape word, objects ordered left to right
/// by <see cref="LeftToRight"/>; absent objects are <see cref="Pad"/>;</item>
/// <item>position 9: the background word, <c>white</c>, <c>grey</c>, <c>cream</c> or <c>black</c>;</item>
/// <item>positions 10-31: <see cref="Pad"/>.</item>
/// </list>
/// Every word is one of <see cref="Vocabulary"/>, and the toy tokenizer encodes each, with SentencePiece's leading
/// space, as exactly one token (<c>▁red</c>).
/// </summary>
public static class SceneCode
{
    /// <summary>The number of words in a code: the Q-Former's query count.</summary>
    public const int Length = 32;

    /// <summary>The position of the count word.</summary>
    public const int CountPosition = 0;

    /// <summary>The position of the background word.</summary>
    public const int BackgroundPosition = 1 + 2 * Palette.MaxShapes;

    /// <summary>The word of an absent object and of every position after the background.</summary>
    public const string Pad = "none";

    /// <summary>The position of object <paramref name="k"/>'s colour word (its shape word follows).</summary>
    public static int ColourPosition(int k) => 1 + 2 * k;

    /// <summary>The position of object <paramref name="k"/>'s shape word.</summary>
    public static int ShapePosition(int k) => 2 + 2 * k;

    /// <summary>
    /// Every code word, in a fixed order: the count words one to four, the six colours, the three shapes, the four
    /// backgrounds, then <see cref="Pad"/> (18 words). A classifier over code words uses these indices.
    /// </summary>
    public static IReadOnlyList<string> Vocabulary { get; } =
    [
        .. Palette.NumberWords.Skip(Palette.MinShapes).Take(Palette.MaxShapes),
        .. Palette.Colours.Select(Palette.Word),
        .. Palette.Shapes.Select(Palette.Word),
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

    /// <summary>A scene's objects left to right: by bounding-box centre x, ties by centre y. Captions list objects in this order too.</summary>
    public static IReadOnlyList<SceneObject> LeftToRight(Scene scene)
    {
        ArgumentNullException.ThrowIfNull(scene);
        // Twice the centre, so that the comparison stays in integers.
        return scene.Objects.OrderBy(o => 2 * o.X + o.Size).ThenBy(o => 2 * o.Y + o.Size).ToArray();
    }

    /// <summary>The <see cref="Length"/> code words of <paramref name="scene"/>.</summary>
    public static IReadOnlyList<string> Words(Scene scene)
    {
        var words = Enumerable.Repeat(Pad, Length).ToArray();
        var objects = LeftToRight(scene);
        words[CountPosition] = Palette.NumberWords[objects.Count];
        for (var k = 0; k < objects.Count; k++)
        {
            words[ColourPosition(k)] = Palette.Word(objects[k].Colour);
            words[ShapePosition(k)] = Palette.Word(objects[k].Shape);
        }
        words[BackgroundPosition] = Palette.Word(scene.Background);
        return words;
    }

    /// <summary>The indices in <see cref="Vocabulary"/> of <paramref name="scene"/>'s code words (the vision tower's targets).</summary>
    public static IReadOnlyList<int> Indices(Scene scene) => Words(scene).Select(IndexOf).ToArray();
}
