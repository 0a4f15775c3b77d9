using SkiaSharp;

namespace MiniGpt4.Imaging.Skia;

/// <summary>RGBA -> RGB, applying an EXIF orientation (1-8) on the way.</summary>
internal static class Orientation
{
    public static DecodedImage ToRgb(byte[] rgba, int width, int height, SKEncodedOrigin origin)
    {
        bool swap = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        int outW = swap ? height : width, outH = swap ? width : height;
        var rgb = new byte[checked(outW * outH * 3)];
        if (origin == SKEncodedOrigin.TopLeft)
        {
            for (int s = 0, d = 0; d < rgb.Length; s += 4, d += 3)
            {
                rgb[d] = rgba[s];
                rgb[d + 1] = rgba[s + 1];
                rgb[d + 2] = rgba[s + 2];
            }
            return new DecodedImage(width, height, rgb);
        }
        int o = 0;
        for (int y = 0; y < outH; y++)
        {
            for (int x = 0; x < outW; x++, o += 3)
            {
                // Source pixel shown at (x, y) once the orientation is applied.
                var (sx, sy) = origin switch
                {
                    SKEncodedOrigin.TopRight => (width - 1 - x, y),
                    SKEncodedOrigin.BottomRight => (width - 1 - x, height - 1 - y),
                    SKEncodedOrigin.BottomLeft => (x, height - 1 - y),
                    SKEncodedOrigin.LeftTop => (y, x),
                    SKEncodedOrigin.RightTop => (y, height - 1 - x),
                    SKEncodedOrigin.RightBottom => (width - 1 - y, height - 1 - x),
                    SKEncodedOrigin.LeftBottom => (width - 1 - y, x),
                    _ => (x, y),
                };
                int s = (sy * width + sx) * 4;
                rgb[o] = rgba[s];
                rgb[o + 1] = rgba[s + 1];
                rgb[o + 2] = rgba[s + 2];
            }
        }
        return new DecodedImage(outW, outH, rgb);
    }
}
