namespace MiniGpt4.SyntheticWorld;

/// <summary>How an image file is encoded.</summary>
public enum ImageFileFormat
{
    /// <summary>PNG (lossless).</summary>
    Png,
    /// <summary>JPEG at <see cref="Scene.JpegQuality"/>.</summary>
    Jpeg,
}

/// <summary>One filled shape: its kind, colour, and its bounding box (a square of <see cref="Size"/> pixels with its top-left corner at <see cref="X"/>, <see cref="Y"/>).</summary>
/// <param name="Shape">Circle, square or triangle.</param>
/// <param name="Colour">One of the six colours.</param>
/// <param name="Rgb">The colour drawn (the base colour with its jitter).</param>
/// <param name="X">Left edge of the bounding box, in pixels.</param>
/// <param name="Y">Top edge of the bounding box, in pixels.</param>
/// <param name="Size">Side of the bounding box: the circle's diameter, the square's side, the triangle's base and height.</param>
public sealed record SceneObject(ShapeKind Shape, ShapeColour Colour, Rgb Rgb, int X, int Y, int Size)
{
    /// <summary>The gap between this object's bounding box and <paramref name="other"/>'s: the larger of the horizontal and vertical gaps (negative when they overlap).</summary>
    public int GapTo(SceneObject other)
    {
        var gapX = Math.Max(other.X - (X + Size), X - (other.X + other.Size));
        var gapY = Math.Max(other.Y - (Y + Size), Y - (other.Y + other.Size));
        return Math.Max(gapX, gapY);
    }
}

/// <summary>One image of the world: its size, background, shapes and how it is encoded.</summary>
/// <param name="Width">Width in pixels.</param>
/// <param name="Height">Height in pixels.</param>
/// <param name="Background">The background's kind.</param>
/// <param name="BackgroundRgb">The background drawn (with its jitter, except black).</param>
/// <param name="Objects">The shapes, one to four, non-overlapping and at least <see cref="Palette.MinGap"/> pixels apart.</param>
/// <param name="Format">PNG or JPEG.</param>
/// <param name="JpegQuality">The JPEG quality (75-90); 0 for PNG.</param>
/// <param name="AntiAliased">Whether edges are anti-aliased (coverage-weighted) or hard.</param>
public sealed record Scene(int Width, int Height, BackgroundKind Background, Rgb BackgroundRgb, IReadOnlyList<SceneObject> Objects,
    ImageFileFormat Format, int JpegQuality, bool AntiAliased)
{
    /// <summary>The file extension of <see cref="Format"/>: ".png" or ".jpg".</summary>
    public string Extension => Format == ImageFileFormat.Png ? ".png" : ".jpg";

    /// <summary>What a correct answer about this scene may rely on.</summary>
    public SceneFacts Facts => new(
        Objects.Count,
        Objects.Select(o => o.Colour).Distinct().Order().ToArray(),
        Objects.Select(o => o.Shape).Distinct().Order().ToArray());
}

/// <summary>The facts of a scene the answer rules use.</summary>
/// <param name="Count">How many shapes.</param>
/// <param name="Colours">The colours present (each once, in enum order).</param>
/// <param name="Shapes">The shapes present (each once, in enum order).</param>
public sealed record SceneFacts(int Count, IReadOnlyList<ShapeColour> Colours, IReadOnlyList<ShapeKind> Shapes);
