using MiniGpt4.SyntheticWorld;
using SkiaSharp;

namespace MiniGpt4.Cli.World;

/// <summary>
/// Draws a scene of the synthetic world with SkiaSharp instead of the world's own rasteriser (<see cref="SceneRenderer"/>):
/// Skia's path filling and anti-aliasing, and Skia's PNG and JPEG encoders (libpng, libjpeg-turbo), so that held-out
/// evaluation images come from other software than the training images. Same scene, same definition: filled circle,
/// axis-aligned square and upright triangle in the scene's bounding boxes and colours, edges anti-aliased when the scene says so.
/// </summary>
internal static class SkiaSceneRenderer
{
    /// <summary>Writes the scene's file (its format and JPEG quality) to <paramref name="path"/>.</summary>
    public static void Save(Scene scene, string path)
    {
        using var surface = SKSurface.Create(new SKImageInfo(scene.Width, scene.Height, SKColorType.Rgba8888, SKAlphaType.Premul));
        var canvas = surface.Canvas;
        canvas.Clear(Colour(scene.BackgroundRgb));
        foreach (var o in scene.Objects)
        {
            using var paint = new SKPaint { Color = Colour(o.Rgb), IsAntialias = scene.AntiAliased, Style = SKPaintStyle.Fill };
            float left = o.X, top = o.Y, size = o.Size;
            switch (o.Shape)
            {
                case ShapeKind.Circle:
                    canvas.DrawCircle(left + size / 2, top + size / 2, size / 2, paint);
                    break;
                case ShapeKind.Square:
                    canvas.DrawRect(left, top, size, size, paint);
                    break;
                case ShapeKind.Triangle:
                    using (var path2 = new SKPath())
                    {
                        path2.MoveTo(left + size / 2, top);
                        path2.LineTo(left + size, top + size);
                        path2.LineTo(left, top + size);
                        path2.Close();
                        canvas.DrawPath(path2, paint);
                    }
                    break;
                default:
                    throw new ArgumentOutOfRangeException(nameof(scene), o.Shape, "unknown shape");
            }
        }
        using var image = surface.Snapshot();
        using var data = scene.Format == ImageFileFormat.Png
            ? image.Encode(SKEncodedImageFormat.Png, 100)
            : image.Encode(SKEncodedImageFormat.Jpeg, scene.JpegQuality);
        using var file = File.Create(path);
        data.SaveTo(file);
    }

    private static SKColor Colour(Rgb c) => new(c.R, c.G, c.B);
}
