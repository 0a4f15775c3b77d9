using System.Buffers.Binary;
using System.IO.Compression;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.PixelFormats;

namespace MiniGpt4.Tests.Imaging;

/// <summary>Small images made in the test: encoded with ImageSharp or written byte by byte.</summary>
internal static class TestImages
{
    /// <summary>A w x h image of four flat quadrants (red, green, blue, white) with a few colours only.</summary>
    public static byte[] Quadrants(int w, int h)
    {
        var rgb = new byte[w * h * 3];
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
            {
                (byte r, byte g, byte b) c = (x < w / 2, y < h / 2) switch
                {
                    (true, true) => (220, 20, 30),
                    (false, true) => (10, 200, 40),
                    (true, false) => (30, 40, 210),
                    _ => (250, 250, 250),
                };
                int o = (y * w + x) * 3;
                rgb[o] = c.r; rgb[o + 1] = c.g; rgb[o + 2] = c.b;
            }
        return rgb;
    }

    public static byte[] Encode(byte[] rgb, int w, int h, IImageEncoder encoder, Action<Image>? edit = null)
    {
        using var image = Image.LoadPixelData<Rgb24>(rgb, w, h);
        edit?.Invoke(image);
        using var ms = new MemoryStream();
        image.Save(ms, encoder);
        return ms.ToArray();
    }

    /// <summary>A PNG with the given IHDR size, one IDAT of <paramref name="idat"/> (zlib-compressed) and IEND.</summary>
    public static byte[] Png(uint width, uint height, byte[] rawScanlines, bool withData = true, bool withEnd = true)
    {
        using var ms = new MemoryStream();
        ms.Write([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]);
        var ihdr = new byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr.AsSpan(4), height);
        ihdr[8] = 8; ihdr[9] = 2; // 8-bit RGB
        Chunk(ms, "IHDR", ihdr);
        if (withData)
        {
            using var z = new MemoryStream();
            using (var zs = new ZLibStream(z, CompressionLevel.Fastest, leaveOpen: true)) zs.Write(rawScanlines);
            Chunk(ms, "IDAT", z.ToArray());
        }
        if (withEnd) Chunk(ms, "IEND", []);
        return ms.ToArray();
    }

    /// <summary>
    /// A small valid file of <paramref name="format"/> (png, jpeg, bmp, gif, webp) whose header declares
    /// <paramref name="width"/> x <paramref name="height"/> pixels: a decompression bomb's header.
    /// </summary>
    public static byte[] DeclaringSize(string format, int width, int height)
    {
        var rgb = Quadrants(16, 16);
        switch (format)
        {
            case "png":
                return Png((uint)width, (uint)height, new byte[1 + width * 3]); // one row of data
            case "jpeg":
            {
                var jpg = Encode(rgb, 16, 16, new SixLabors.ImageSharp.Formats.Jpeg.JpegEncoder { Quality = 90 });
                for (int pos = 2; ; pos += 2 + BinaryPrimitives.ReadUInt16BigEndian(jpg.AsSpan(pos + 2)))
                    if (jpg[pos + 1] is 0xC0 or 0xC1 or 0xC2) // SOFn: FF Cn, length, precision, height, width
                    {
                        BinaryPrimitives.WriteUInt16BigEndian(jpg.AsSpan(pos + 5), (ushort)height);
                        BinaryPrimitives.WriteUInt16BigEndian(jpg.AsSpan(pos + 7), (ushort)width);
                        return jpg;
                    }
            }
            case "bmp":
            {
                var bmp = Encode(rgb, 16, 16, new SixLabors.ImageSharp.Formats.Bmp.BmpEncoder { BitsPerPixel = SixLabors.ImageSharp.Formats.Bmp.BmpBitsPerPixel.Pixel24 });
                BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(18), width);
                BinaryPrimitives.WriteInt32LittleEndian(bmp.AsSpan(22), height);
                return bmp;
            }
            case "gif":
            {
                var gif = Encode(rgb, 16, 16, new SixLabors.ImageSharp.Formats.Gif.GifEncoder());
                BinaryPrimitives.WriteUInt16LittleEndian(gif.AsSpan(6), (ushort)width); // logical screen
                BinaryPrimitives.WriteUInt16LittleEndian(gif.AsSpan(8), (ushort)height);
                return gif;
            }
            case "webp":
            {
                // VP8L stores at most 16384 per side; a VP8X chunk declares the canvas (24 bits per side).
                var lossless = Encode(rgb, 16, 16, new SixLabors.ImageSharp.Formats.Webp.WebpEncoder { FileFormat = SixLabors.ImageSharp.Formats.Webp.WebpFileFormatType.Lossless });
                var vp8x = new byte[18];
                "VP8X"u8.CopyTo(vp8x);
                BinaryPrimitives.WriteUInt32LittleEndian(vp8x.AsSpan(4), 10);
                WriteUInt24(vp8x.AsSpan(12), width - 1);
                WriteUInt24(vp8x.AsSpan(15), height - 1);
                var body = lossless[12..];
                var webp = new byte[12 + vp8x.Length + body.Length];
                "RIFF"u8.CopyTo(webp);
                BinaryPrimitives.WriteUInt32LittleEndian(webp.AsSpan(4), (uint)(webp.Length - 8));
                "WEBP"u8.CopyTo(webp.AsSpan(8));
                vp8x.CopyTo(webp.AsSpan(12));
                body.CopyTo(webp.AsSpan(12 + vp8x.Length));
                return webp;
            }
            default:
                throw new ArgumentException(format, nameof(format));
        }
    }

    private static void WriteUInt24(Span<byte> s, int v) { s[0] = (byte)v; s[1] = (byte)(v >> 8); s[2] = (byte)(v >> 16); }

    /// <summary>A PNG of <paramref name="width"/> x <paramref name="height"/> with a private chunk of <paramref name="padding"/> bytes after IHDR.</summary>
    public static byte[] PngWithPadding(int width, int height, int padding)
    {
        var png = Encode(Quadrants(width, height), width, height, new SixLabors.ImageSharp.Formats.Png.PngEncoder());
        using var ms = new MemoryStream();
        ms.Write(png, 0, 33); // signature + IHDR chunk
        Chunk(ms, "prVt", new byte[padding]);
        ms.Write(png, 33, png.Length - 33);
        return ms.ToArray();
    }

    /// <summary>A valid JPEG with <paramref name="segments"/> APP15 segments of 65,533 bytes (the largest) before its frame header.</summary>
    public static byte[] JpegWithMetadata(int width, int height, int segments)
    {
        var jpg = Encode(Quadrants(width, height), width, height, new SixLabors.ImageSharp.Formats.Jpeg.JpegEncoder { Quality = 90 });
        using var ms = new MemoryStream();
        ms.Write(jpg, 0, 2); // SOI
        var segment = new byte[2 + 2 + 65531];
        segment[0] = 0xFF; segment[1] = 0xEF;
        BinaryPrimitives.WriteUInt16BigEndian(segment.AsSpan(2), 65533);
        for (int i = 0; i < segments; i++) ms.Write(segment);
        ms.Write(jpg, 2, jpg.Length - 2);
        return ms.ToArray();
    }

    private static void Chunk(Stream s, string type, byte[] data)
    {
        var head = new byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(head, (uint)data.Length);
        System.Text.Encoding.ASCII.GetBytes(type, head.AsSpan(4));
        s.Write(head);
        s.Write(data);
        var crcInput = head.AsSpan(4).ToArray().Concat(data).ToArray();
        var crc = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(crc, Crc32(crcInput));
        s.Write(crc);
    }

    private static uint Crc32(byte[] data)
    {
        uint c = 0xFFFFFFFF;
        foreach (var b in data)
        {
            c ^= b;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
        }
        return c ^ 0xFFFFFFFF;
    }
}
