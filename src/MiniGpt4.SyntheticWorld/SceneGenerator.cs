namespace MiniGpt4.SyntheticWorld;

/// <summary>
/// Draws scenes at random by the world's definition (<see cref="Palette"/>): a size (landscape, square or portrait,
/// 160×120 to 800×600), a background, one to four shapes of 16-30% of the short side placed inside the image with
/// their bounding boxes at least <see cref="Palette.MinGap"/> pixels apart, PNG or JPEG (quality 75-90), edges
/// anti-aliased or not. The same random stream gives the same scene.
/// </summary>
public static class SceneGenerator
{
    /// <summary>Shapes keep this many pixels from the image's edges, so that no edge cuts one.</summary>
    public const int Margin = 2;

    /// <summary>Scene <paramref name="index"/> of the data set seeded with <paramref name="seed"/>.</summary>
    public static Scene Generate(long seed, long index) => Generate(WorldRandom.ForItem(seed, index));

    /// <summary>A scene from <paramref name="random"/>.</summary>
    public static Scene Generate(WorldRandom random)
    {
        var (width, height) = DrawSize(random);
        var background = random.Pick(Palette.Backgrounds);
        var backgroundRgb = Palette.Varies(background) ? Jittered(Palette.Base(background), random) : Palette.Base(background);
        var count = random.Next(Palette.MinShapes, Palette.MaxShapes);
        var objects = Place(random, width, height, count);
        var jpeg = random.NextBool();
        var quality = jpeg ? random.Next(Palette.MinJpegQuality, Palette.MaxJpegQuality) : 0;
        var antiAliased = random.NextBool();
        return new Scene(width, height, background, backgroundRgb, objects, jpeg ? ImageFileFormat.Jpeg : ImageFileFormat.Png, quality, antiAliased);
    }

    /// <summary>The smallest and largest shape size for an image whose short side is <paramref name="shortSide"/>.</summary>
    public static (int Min, int Max) SizeRange(int shortSide) =>
        ((int)Math.Ceiling(Palette.MinSizeFraction * shortSide - 1e-9), (int)Math.Floor(Palette.MaxSizeFraction * shortSide + 1e-9));

    /// <summary>A colour's base value with up to <see cref="Palette.Jitter"/> added to or taken from each channel (clamped to 0-255).</summary>
    public static Rgb Jittered(Rgb baseRgb, WorldRandom random)
    {
        static byte Channel(byte v, WorldRandom r) => (byte)Math.Clamp(v + r.Next(-Palette.Jitter, Palette.Jitter), 0, 255);
        return new Rgb(Channel(baseRgb.R, random), Channel(baseRgb.G, random), Channel(baseRgb.B, random));
    }

    private static (int Width, int Height) DrawSize(WorldRandom random)
    {
        var orientation = random.Next(0, 2); // 0 square, 1 landscape, 2 portrait
        if (orientation == 0)
        {
            var side = random.Next(Palette.MinShortSide, Palette.MaxShortSide);
            return (side, side);
        }
        // An aspect ratio from 1.15 to 16:9, the long side within bounds.
        var ratio = 1.15 + random.NextDouble() * (16.0 / 9.0 - 1.15);
        var shortSide = random.Next(Palette.MinShortSide, Math.Min(Palette.MaxShortSide, (int)(Palette.MaxLongSide / ratio)));
        var longSide = Math.Clamp((int)Math.Round(shortSide * ratio), Math.Max(Palette.MinLongSide, shortSide + 1), Palette.MaxLongSide);
        return orientation == 1 ? (longSide, shortSide) : (shortSide, longSide);
    }

    private static SceneObject[] Place(WorldRandom random, int width, int height, int count)
    {
        var (min, max) = SizeRange(Math.Min(width, height));
        // Rejection sampling; a layout that cannot take the next shape starts again. Four of the largest shapes
        // fit the smallest image (2×2 of 36+6 px in 120×160), so this ends quickly.
        while (true)
        {
            var objects = new List<SceneObject>(count);
            for (var attempt = 0; objects.Count < count && attempt < 200; attempt++)
            {
                var size = random.Next(min, max);
                var x = random.Next(Margin, width - Margin - size);
                var y = random.Next(Margin, height - Margin - size);
                var shape = random.Pick(Palette.Shapes);
                var colour = random.Pick(Palette.Colours);
                var candidate = new SceneObject(shape, colour, Jittered(Palette.Base(colour), random), x, y, size);
                if (objects.All(o => o.GapTo(candidate) >= Palette.MinGap)) objects.Add(candidate);
            }
            if (objects.Count == count) return objects.ToArray();
        }
    }
}
