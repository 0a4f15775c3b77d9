using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace MiniGpt4.SyntheticWorld;

/// <summary>
/// Rasterises scenes (no drawing library: the shapes are tested point by point). Without anti-aliasing a pixel takes
/// a shape's colour when its centre is inside the shape; with it, each pixel is sampled on a 4×4 grid and the
/// shape's colour is blended over the background by the share of samples inside. Nothing is drawn outside a
/// shape's bounding box, so shapes whose boxes are <see cref="Palette.MinGap"/> apart are that far apart in the image.
/// </summary>
public static class SceneRenderer
{
    /// <summary>Samples per pixel side when anti-aliasing.</summary>
    public const int Supersampling = 4;

    /// <summary>The scene's pixels, RGB, row by row (<c>Width * Height * 3</c> bytes).</summary>
    public static byte[] Render(Scene scene)
    {
        var rgb = new byte[scene.Width * scene.Height * 3];
        var bg = scene.BackgroundRgb;
        for (var i = 0; i < rgb.Length; i += 3) (rgb[i], rgb[i + 1], rgb[i + 2]) = (bg.R, bg.G, bg.B);
        foreach (var o in scene.Objects)
            for (var py = o.Y; py < o.Y + o.Size; py++)
            for (var px = o.X; px < o.X + o.Size; px++)
            {
                var c = Coverage(o, px, py, scene.AntiAliased);
                if (c <= 0) continue;
                var at = (py * scene.Width + px) * 3;
                rgb[at] = Blend(bg.R, o.Rgb.R, c);
                rgb[at + 1] = Blend(bg.G, o.Rgb.G, c);
                rgb[at + 2] = Blend(bg.B, o.Rgb.B, c);
            }
        return rgb;
    }

    /// <summary>The share of pixel (<paramref name="px"/>, <paramref name="py"/>) the object covers: 0 or 1 without anti-aliasing, a multiple of 1/16 with it.</summary>
    public static double Coverage(SceneObject o, int px, int py, bool antiAliased)
    {
        if (!antiAliased) return Inside(o, px + 0.5, py + 0.5) ? 1 : 0;
        var inside = 0;
        for (var sy = 0; sy < Supersampling; sy++)
        for (var sx = 0; sx < Supersampling; sx++)
            if (Inside(o, px + (sx + 0.5) / Supersampling, py + (sy + 0.5) / Supersampling)) inside++;
        return inside / (double)(Supersampling * Supersampling);
    }

    /// <summary>Whether the point (<paramref name="x"/>, <paramref name="y"/>) (pixel units, y down) is inside the shape.</summary>
    public static bool Inside(SceneObject o, double x, double y)
    {
        double s = o.Size, left = o.X, top = o.Y;
        if (x < left || x >= left + s || y < top || y >= top + s) return false;
        var cx = left + s / 2;
        switch (o.Shape)
        {
            case ShapeKind.Square:
                return true;
            case ShapeKind.Circle:
            {
                var cy = top + s / 2;
                return (x - cx) * (x - cx) + (y - cy) * (y - cy) <= s * s / 4;
            }
            case ShapeKind.Triangle:
                // Apex at (cx, top), base from (left, top + s) to (left + s, top + s): half-width grows by 1/2 per row.
                return Math.Abs(x - cx) <= (y - top) / 2;
            default:
                throw new ArgumentOutOfRangeException(nameof(o), o.Shape, "unknown shape");
        }
    }

    /// <summary>Writes the scene as its <see cref="Scene.Format"/> (PNG, or JPEG at its quality) to <paramref name="destination"/>.</summary>
    public static void Encode(Scene scene, Stream destination)
    {
        using var image = Image.LoadPixelData<Rgb24>(Render(scene), scene.Width, scene.Height);
        if (scene.Format == ImageFileFormat.Png) image.Save(destination, new PngEncoder());
        else image.Save(destination, new JpegEncoder { Quality = scene.JpegQuality });
    }

    /// <summary>Writes the scene's file to <paramref name="path"/>.</summary>
    public static void Save(Scene scene, string path)
    {
        using var file = File.Create(path);
        Encode(scene, file);
    }

    private static byte Blend(byte background, byte colour, double coverage) =>
        (byte)Math.Round(background + (colour - background) * coverage, MidpointRounding.AwayFromZero);
}
