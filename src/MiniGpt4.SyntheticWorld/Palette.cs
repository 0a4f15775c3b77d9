namespace MiniGpt4.SyntheticWorld;

/// <summary>An sRGB colour, 8 bits a channel.</summary>
/// <param name="R">Red.</param>
/// <param name="G">Green.</param>
/// <param name="B">Blue.</param>
public readonly record struct Rgb(byte R, byte G, byte B)
{
    /// <summary>The largest difference of one channel between this colour and <paramref name="other"/>.</summary>
    public int MaxChannelDistance(Rgb other) =>
        Math.Max(Math.Abs(R - other.R), Math.Max(Math.Abs(G - other.G), Math.Abs(B - other.B)));

    /// <inheritdoc/>
    public override string ToString() => $"({R},{G},{B})";
}

/// <summary>The three shapes.</summary>
public enum ShapeKind
{
    /// <summary>A filled circle; its size is the diameter.</summary>
    Circle,
    /// <summary>A filled, axis-aligned square; its size is the side.</summary>
    Square,
    /// <summary>A filled, upright triangle (apex at the top centre, base horizontal); its size is the base and the height.</summary>
    Triangle,
}

/// <summary>The six object colours.</summary>
public enum ShapeColour
{
    /// <summary>(220,30,30).</summary>
    Red,
    /// <summary>(40,170,60).</summary>
    Green,
    /// <summary>(40,70,220).</summary>
    Blue,
    /// <summary>(240,210,40).</summary>
    Yellow,
    /// <summary>(140,60,180).</summary>
    Purple,
    /// <summary>(245,140,30).</summary>
    Orange,
}

/// <summary>The four backgrounds.</summary>
public enum BackgroundKind
{
    /// <summary>(255,255,255), ±18 a channel.</summary>
    White,
    /// <summary>(200,200,200), ±18 a channel.</summary>
    Grey,
    /// <summary>(245,240,225), ±18 a channel.</summary>
    Cream,
    /// <summary>(0,0,0) exactly.</summary>
    Black,
}

/// <summary>The world's definition: base colours, jitter, sizes, spacing, and the words for each thing. One place for every number of the definition.</summary>
public static class Palette
{
    /// <summary>Each channel of a colour (and of every background but black) varies by up to this much around its base, clamped to 0-255.</summary>
    public const int Jitter = 18;

    /// <summary>Shapes are at least this many pixels apart (and never overlap).</summary>
    public const int MinGap = 6;

    /// <summary>A shape's size is at least this fraction of the image's short side.</summary>
    public const double MinSizeFraction = 0.16;

    /// <summary>A shape's size is at most this fraction of the image's short side.</summary>
    public const double MaxSizeFraction = 0.30;

    /// <summary>Fewest shapes in a scene.</summary>
    public const int MinShapes = 1;

    /// <summary>Most shapes in a scene.</summary>
    public const int MaxShapes = 4;

    /// <summary>The smallest landscape image is 160×120 (portrait 120×160).</summary>
    public const int MinLongSide = 160, MinShortSide = 120;

    /// <summary>The largest landscape image is 800×600 (portrait 600×800).</summary>
    public const int MaxLongSide = 800, MaxShortSide = 600;

    /// <summary>JPEG quality range.</summary>
    public const int MinJpegQuality = 75, MaxJpegQuality = 90;

    /// <summary>Every shape.</summary>
    public static IReadOnlyList<ShapeKind> Shapes { get; } = Enum.GetValues<ShapeKind>();

    /// <summary>Every colour.</summary>
    public static IReadOnlyList<ShapeColour> Colours { get; } = Enum.GetValues<ShapeColour>();

    /// <summary>Every background.</summary>
    public static IReadOnlyList<BackgroundKind> Backgrounds { get; } = Enum.GetValues<BackgroundKind>();

    /// <summary>The base value of a colour.</summary>
    public static Rgb Base(ShapeColour colour) => colour switch
    {
        ShapeColour.Red => new(220, 30, 30),
        ShapeColour.Green => new(40, 170, 60),
        ShapeColour.Blue => new(40, 70, 220),
        ShapeColour.Yellow => new(240, 210, 40),
        ShapeColour.Purple => new(140, 60, 180),
        ShapeColour.Orange => new(245, 140, 30),
        _ => throw new ArgumentOutOfRangeException(nameof(colour)),
    };

    /// <summary>The base value of a background.</summary>
    public static Rgb Base(BackgroundKind background) => background switch
    {
        BackgroundKind.White => new(255, 255, 255),
        BackgroundKind.Grey => new(200, 200, 200),
        BackgroundKind.Cream => new(245, 240, 225),
        BackgroundKind.Black => new(0, 0, 0),
        _ => throw new ArgumentOutOfRangeException(nameof(background)),
    };

    /// <summary>Whether a background's colour varies (all but black).</summary>
    public static bool Varies(BackgroundKind background) => background != BackgroundKind.Black;

    /// <summary>The word for a shape: circle, square, triangle.</summary>
    public static string Word(ShapeKind shape) => shape.ToString().ToLowerInvariant();

    /// <summary>The plural of a shape's word: circles, squares, triangles.</summary>
    public static string Plural(ShapeKind shape) => Word(shape) + "s";

    /// <summary>The word for a colour: red, green, blue, yellow, purple, orange.</summary>
    public static string Word(ShapeColour colour) => colour.ToString().ToLowerInvariant();

    /// <summary>The word for a background: white, grey, cream, black.</summary>
    public static string Word(BackgroundKind background) => background.ToString().ToLowerInvariant();

    /// <summary>The number words one to four (index 1-4).</summary>
    public static IReadOnlyList<string> NumberWords { get; } = ["zero", "one", "two", "three", "four"];

    /// <summary>The shape a word names (singular or plural), if any.</summary>
    public static bool TryParseShape(string word, out ShapeKind shape)
    {
        foreach (var s in Shapes)
            if (word == Word(s) || word == Plural(s)) { shape = s; return true; }
        shape = default;
        return false;
    }

    /// <summary>The colour a word names, if any.</summary>
    public static bool TryParseColour(string word, out ShapeColour colour)
    {
        foreach (var c in Colours)
            if (word == Word(c)) { colour = c; return true; }
        colour = default;
        return false;
    }
}
