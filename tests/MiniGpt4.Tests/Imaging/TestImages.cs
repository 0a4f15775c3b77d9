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
