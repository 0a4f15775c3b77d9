using MiniGpt4.Imaging;
using MiniGpt4.Imaging.Skia;
using MiniGpt4.Tests.Support;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Formats.Webp;
using Xunit;

namespace MiniGpt4.Tests.Imaging;

/// <summary>Bad, hostile and unusual images: each is refused with a clear <see cref="MiniGptImageException"/> or decoded right.</summary>
public class HostileImageTests
{
    private static readonly ImageDecodingOptions Sharp = ImageDecodingOptions.Default;
    private static readonly ImageDecodingOptions Skia = new() { Decoder = SkiaImageDecoder.Instance };

    public static TheoryData<string> Decoders() => new() { "imagesharp", "skia" };
    private static ImageDecodingOptions For(string decoder, bool gif = false, bool tiff = false, long maxPixels = ImageDecodingOptions.DefaultMaxPixels)
        => new() { Decoder = decoder == "skia" ? SkiaImageDecoder.Instance : ImageSharpDecoder.Instance, AllowGif = gif, AllowTiff = tiff, MaxPixels = maxPixels };

    private static MiniGptImageException Refused(byte[] data, ImageDecodingOptions options)
        => Assert.Throws<MiniGptImageException>(() => ImagePreprocessor.ToPixelValues(ImageInput.FromBytes(data), 224, options));

    private static byte[] OraclePng() => File.ReadAllBytes(Oracle.Image(Oracle.ImageA));
    private static byte[] OracleJpeg() => File.ReadAllBytes(Oracle.Image(Oracle.ImageB));

    [SkippableTheory]
    [MemberData(nameof(Decoders))]
    public void Truncated_png_is_refused(string decoder)
    {
        var png = OraclePng();
        var e = Refused(png[..(png.Length / 2)], For(decoder));
        Assert.Contains("Truncated PNG", e.Message);
        e = Refused(png[..^12], For(decoder)); // only the IEND chunk missing
        Assert.Contains("IEND", e.Message);
    }

    [SkippableTheory]
    [MemberData(nameof(Decoders))]
    public void Truncated_jpeg_is_refused(string decoder)
    {
        var jpg = OracleJpeg();
        var e = Refused(jpg[..(jpg.Length * 2 / 3)], For(decoder));
        Assert.Contains("Truncated JPEG", e.Message);
        Assert.Contains("FFD9", e.Message);
        e = Refused(jpg[..^2], For(decoder)); // all data but the EOI marker
        Assert.Contains("Truncated JPEG", e.Message);
    }

    [SkippableFact]
    public void Skia_decoder_alone_refuses_a_truncated_jpeg()
    {
        var jpg = OracleJpeg();
        var e = Assert.Throws<MiniGptImageException>(() => SkiaImageDecoder.Instance.Decode(jpg[..(jpg.Length / 2)], Skia));
        Assert.Contains("Truncated", e.Message);
    }

    [SkippableFact]
    public void Data_after_the_end_marker_is_ignored()
    {
        var jpg = OracleJpeg().Concat(new byte[] { 0, 1, 2, 3 }).ToArray();
        var png = OraclePng().Concat(new byte[] { 9, 9 }).ToArray();
        Assert.Equal(100, ImagePreprocessor.Decode(ImageInput.FromBytes(jpg), Skia).Width);
        Assert.Equal(640, ImagePreprocessor.Decode(ImageInput.FromBytes(png), Sharp).Width);
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void Empty_input_is_refused(string decoder)
    {
        Assert.Contains("empty", Refused([], For(decoder)).Message);
        using var tmp = new TempDir();
        var path = tmp.File("empty.tmp");
        File.WriteAllBytes(path, []);
        var e = Assert.Throws<MiniGptImageException>(() => ImagePreprocessor.Decode(ImageInput.FromFile(path), For(decoder)));
        Assert.Contains("empty", e.Message);
        Assert.Contains(path, e.Message);
        Assert.Contains("empty", Assert.Throws<MiniGptImageException>(
            () => ImagePreprocessor.Decode(ImageInput.FromStream(new MemoryStream()), For(decoder))).Message);
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void Zero_size_header_is_refused(string decoder)
    {
        var e = Refused(TestImages.Png(0, 10, []), For(decoder));
        Assert.Contains("empty size 0x10", e.Message);
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void A_decompression_bomb_header_is_refused_before_decoding(string decoder)
    {
        // 50000 x 50000 RGB declared; one tiny row of data. Full and header-only variants.
        foreach (var png in new[] { TestImages.Png(50000, 50000, new byte[151]), TestImages.Png(50000, 50000, [], withData: false, withEnd: false) })
        {
            var e = Refused(png, For(decoder));
            Assert.Contains("50000x50000", e.Message);
            Assert.Contains("MaxPixels = 40,000,000", e.Message);
            Assert.Contains("before decoding", e.Message);
        }
    }

    [Fact]
    public void The_ImageSharp_decoder_alone_refuses_the_bomb()
    {
        var e = Assert.Throws<MiniGptImageException>(() => ImageSharpDecoder.Instance.Decode(TestImages.Png(50000, 50000, new byte[151]), Sharp));
        Assert.Contains("MaxPixels", e.Message);
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void The_pixel_budget_is_inclusive(string decoder)
    {
        var png = TestImages.Encode(TestImages.Quadrants(100, 100), 100, 100, new PngEncoder());
        Assert.Equal(100, ImagePreprocessor.Decode(ImageInput.FromBytes(png), For(decoder, maxPixels: 10_000)).Width);
        Assert.Contains("MaxPixels = 9,999", Refused(png, For(decoder, maxPixels: 9_999)).Message);
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void Data_that_is_not_an_image_is_refused(string decoder)
    {
        var e = Refused("<!DOCTYPE html><html>not an image</html>"u8.ToArray(), For(decoder));
        Assert.Contains("Not a supported image", e.Message);
        Assert.Contains("3C21444F", e.Message);
        Refused(new byte[] { 0xFF, 0xD8, 0xFF }, For(decoder)); // a JPEG signature and nothing else
        Refused("BM"u8.ToArray(), For(decoder));
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void Gif_is_refused_by_default_and_decoded_when_allowed(string decoder)
    {
        var rgb = TestImages.Quadrants(30, 20);
        var gif = TestImages.Encode(rgb, 30, 20, new GifEncoder());
        Assert.Contains("AllowGif", Refused(gif, For(decoder)).Message);
        var decoded = ImagePreprocessor.Decode(ImageInput.FromBytes(gif), For(decoder, gif: true));
        Assert.Equal((30, 20), (decoded.Width, decoded.Height));
        Assert.Equal(rgb, decoded.Rgb24.ToArray()); // four colours: the palette is exact
    }

    [Fact]
    public void Tiff_is_refused_by_default_and_decoded_when_allowed()
    {
        var rgb = TestImages.Quadrants(30, 20);
        var tiff = TestImages.Encode(rgb, 30, 20, new TiffEncoder());
        Assert.Contains("AllowTiff", Refused(tiff, Sharp).Message);
        var decoded = ImagePreprocessor.Decode(ImageInput.FromBytes(tiff), For("imagesharp", tiff: true));
        Assert.Equal(rgb, decoded.Rgb24.ToArray());
        var cut = Refused(tiff[..(tiff.Length - 100)], For("imagesharp", tiff: true)).Message;
        Assert.True(cut.Contains("Truncated TIFF"), cut);
        var skia = Refused(tiff, new ImageDecodingOptions { Decoder = SkiaImageDecoder.Instance, AllowTiff = true }).Message;
        Assert.Contains("not supported by the Skia decoder", skia);
    }

    [Fact]
    public void Tiff_whose_page_chain_loops_or_leaves_the_data_is_refused_before_decoding()
    {
        // Found by fuzzing: ImageSharp 2.1's Identify never returned when a "next page" offset pointed back or into pixels.
        var tiff = TestImages.Encode(TestImages.Quadrants(30, 20), 30, 20, new TiffEncoder());
        Assert.Equal((byte)'I', tiff[0]);
        var ifd = (int)System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(tiff.AsSpan(4));
        var next = ifd + 2 + 12 * System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(tiff.AsSpan(ifd));
        foreach (var (target, expected) in new[] { ((uint)ifd, "linked twice"), ((uint)tiff.Length - 3, "past the end") })
        {
            var bad = (byte[])tiff.Clone();
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(bad.AsSpan(next), target);
            var e = Refused(bad, For("imagesharp", tiff: true)).Message;
            Assert.True(e.Contains(expected), e);
        }
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void Lossless_bmp_and_webp_decode_exactly_and_truncated_ones_are_refused(string decoder)
    {
        var rgb = TestImages.Quadrants(31, 17);
        foreach (var (name, bytes) in new[]
                 {
                     ("BMP", TestImages.Encode(rgb, 31, 17, new BmpEncoder { BitsPerPixel = BmpBitsPerPixel.Pixel24 })),
                     ("WebP", TestImages.Encode(rgb, 31, 17, new WebpEncoder { FileFormat = WebpFileFormatType.Lossless })),
                 })
        {
            var decoded = ImagePreprocessor.Decode(ImageInput.FromBytes(bytes), For(decoder));
            Assert.Equal(rgb, decoded.Rgb24.ToArray());
            Assert.Contains($"Truncated {name}", Refused(bytes[..(bytes.Length - 10)], For(decoder)).Message);
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Decoders))]
    public void A_misleading_file_extension_does_not_matter(string decoder)
    {
        using var dir = new TempDir();
        var pngAsJpg = dir.File("really_a_png.jpg");
        var jpgAsPng = dir.File("really_a_jpeg.png");
        var noExtension = dir.File("image");
        File.WriteAllBytes(pngAsJpg, OraclePng());
        File.WriteAllBytes(jpgAsPng, OracleJpeg());
        File.WriteAllBytes(noExtension, OraclePng());
        Assert.Equal(640, ImagePreprocessor.Decode(ImageInput.FromFile(pngAsJpg), For(decoder)).Width);
        Assert.Equal(100, ImagePreprocessor.Decode(ImageInput.FromFile(jpgAsPng), For(decoder)).Width);
        Assert.Equal(480, ImagePreprocessor.Decode(ImageInput.FromFile(noExtension), For(decoder)).Height);
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void Corrupt_compressed_data_is_an_image_error(string decoder)
    {
        var png = TestImages.Encode(TestImages.Quadrants(64, 64), 64, 64, new PngEncoder());
        int idat = IndexOf(png, "IDAT"u8) + 4;
        for (int i = idat + 2; i < idat + 40 && i < png.Length - 16; i++) png[i] ^= 0x5A;
        Refused(png, For(decoder));
    }

    /// <summary>Random byte flips in small valid files: every outcome is a decoded image or a MiniGptImageException.</summary>
    [Theory]
    [MemberData(nameof(Decoders))]
    public void Mutated_files_never_escape_as_other_exceptions(string decoder)
    {
        var rgb = TestImages.Quadrants(24, 16);
        var seeds = new[]
        {
            TestImages.Encode(rgb, 24, 16, new PngEncoder()),
            TestImages.Encode(rgb, 24, 16, new SixLabors.ImageSharp.Formats.Jpeg.JpegEncoder { Quality = 80 }),
            TestImages.Encode(rgb, 24, 16, new BmpEncoder()),
            TestImages.Encode(rgb, 24, 16, new WebpEncoder { FileFormat = WebpFileFormatType.Lossless }),
            TestImages.Encode(rgb, 24, 16, new WebpEncoder { FileFormat = WebpFileFormatType.Lossy }),
            TestImages.Encode(rgb, 24, 16, new GifEncoder()),
        };
        var options = For(decoder, gif: true, maxPixels: 1_000_000);
        var random = new Random(1234);
        int decoded = 0, refused = 0;
        foreach (var seed in seeds)
            for (int trial = 0; trial < 150; trial++)
            {
                var data = (byte[])seed.Clone();
                int flips = 1 + random.Next(4);
                for (int f = 0; f < flips; f++) data[random.Next(data.Length)] = (byte)random.Next(256);
                if (random.Next(4) == 0) data = data[..random.Next(1, data.Length)];
                try
                {
                    ImagePreprocessor.ToPixelValues(ImageInput.FromBytes(data), 32, options);
                    decoded++;
                }
                catch (MiniGptImageException) { refused++; }
            }
        Assert.True(decoded > 0 && refused > 0, $"decoded {decoded}, refused {refused}");
    }

    private static int IndexOf(byte[] data, ReadOnlySpan<byte> what) => data.AsSpan().IndexOf(what);
}
