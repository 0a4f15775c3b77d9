using CsCheck;
using MiniGpt4.Imaging;
using MiniGpt4.Imaging.Skia;
using MiniGpt4.Tests.Imaging;
using MiniGpt4.Tests.Support;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Formats.Webp;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt4.Tests.Fuzzing;

/// <summary>
/// Seeded mutations of valid JPEG, PNG, GIF, BMP, WebP and TIFF files through the header inspector and the
/// decoders. Allowed outcome: the image is accepted, or <see cref="MiniGptImageException"/> (the documented
/// contract of <see cref="IImageDecoder"/> and of the library's image entry points); anything else fails.
/// </summary>
public sealed class ImageFuzzTests(ITestOutputHelper output)
{
    private static readonly Type[] Allowed = [typeof(MiniGptImageException)];

    private static readonly Lazy<(string Name, byte[] Bytes)[]> Seeds = new(() =>
    {
        var rgb = TestImages.Quadrants(19, 13);
        var list = new List<(string, byte[])>();
        void Add(string name, IImageEncoder encoder) => list.Add((name, TestImages.Encode(rgb, 19, 13, encoder)));
        Add("jpeg", new JpegEncoder { Quality = 80 });
        Add("jpeg-progressive-ish", new JpegEncoder { Quality = 30, ColorType = JpegColorType.Luminance });
        Add("png", new PngEncoder());
        Add("png-palette", new PngEncoder { ColorType = PngColorType.Palette });
        Add("png-interlaced", new PngEncoder { InterlaceMethod = PngInterlaceMode.Adam7 });
        Add("gif", new GifEncoder());
        Add("bmp", new BmpEncoder());
        Add("bmp-8", new BmpEncoder { BitsPerPixel = BmpBitsPerPixel.Pixel8 });
        Add("webp-lossy", new WebpEncoder { FileFormat = WebpFileFormatType.Lossy });
        Add("webp-lossless", new WebpEncoder { FileFormat = WebpFileFormatType.Lossless });
        Add("tiff", new TiffEncoder());
        Add("tiff-deflate", new TiffEncoder { Compression = SixLabors.ImageSharp.Formats.Tiff.Constants.TiffCompression.Deflate });
        // A BigTIFF header (ImageSharp writes classic TIFF): exercises the 64-bit offsets.
        list.Add(("bigtiff", BigTiff()));
        var jpg = Fixtures.Shared is null ? null : Path.Combine(Fixtures.Shared, "oracle/images/b_tall_100x300.jpg");
        if (jpg is not null && File.Exists(jpg)) list.Add(("oracle-jpeg", File.ReadAllBytes(jpg)));
        return list.ToArray();
    });

    /// <summary>A minimal 2x2 8-bit grey BigTIFF: header, one IFD of five entries, one strip.</summary>
    private static byte[] BigTiff()
    {
        var b = new List<byte>();
        void U16(ulong v) { b.Add((byte)v); b.Add((byte)(v >> 8)); }
        void U64(ulong v) { for (var i = 0; i < 8; i++) b.Add((byte)(v >> (8 * i))); }
        b.AddRange("II"u8.ToArray()); U16(43); U16(8); U16(0); U64(16);
        U64(5);
        void Entry(ushort tag, ushort type, ulong value) { U16(tag); U16(type); U64(1); U64(value); }
        const ulong strip = 16 + 8 + 5 * 20 + 8;
        Entry(256, 3, 2); Entry(257, 3, 2); Entry(262, 3, 1); Entry(273, 16, strip); Entry(279, 16, 4);
        U64(0);
        b.AddRange(new byte[] { 0, 85, 170, 255 });
        return b.ToArray();
    }

    private static readonly ImageDecodingOptions[] Options =
    [
        new() { AllowGif = true, AllowTiff = true, MaxPixels = 1 << 20 },
        new() { MaxPixels = 1 << 20 },
        new() { AllowGif = true, AllowTiff = true, MaxPixels = 300, ApplyExifOrientation = true },
    ];

    private static Gen<(int Seed, int Options, ByteMutation[] Ops)> Cases(int maxOps = 6)
        => Gen.Select(Gen.Int[0, Seeds.Value.Length - 1], Gen.Int[0, Options.Length - 1], Mutations.Some(maxOps));

    private static byte[] Input((int Seed, int Options, ByteMutation[] Ops) c) => Mutations.Apply(Seeds.Value[c.Seed].Bytes, c.Ops);

    private static string Show((int Seed, int Options, ByteMutation[] Ops) c)
        => $"{Seeds.Value[c.Seed].Name} options#{c.Options} [{string.Join(", ", c.Ops)}] -> {Describe.Bytes(Input(c))}";

    [Fact]
    public void Header_inspector_only_ever_refuses_with_MiniGptImageException()
        => FuzzRunner.Run("image-inspector", Cases(), c =>
        {
            var header = EncodedImageInspector.Inspect(Input(c), Options[c.Options]);
            Assert.True(header.Width > 0 && header.Height > 0 && header.Width * header.Height <= Options[c.Options].MaxPixels);
        }, Show, ciIterations: 12000, Allowed, output, Input);

    [Fact]
    public void Decoding_through_the_library_only_ever_refuses_with_MiniGptImageException()
        => FuzzRunner.Run("image-decode", Cases(), c =>
        {
            var options = Options[c.Options];
            var bytes = Input(c);
            // The library's entry point (inspector + decoder + checks of the result) and the decoder's own
            // public contract, called directly as a custom pipeline would.
            var decoded = ImagePreprocessor.Decode(ImageInput.FromBytes(bytes), options);
            Assert.Equal((long)decoded.Width * decoded.Height * 3, decoded.Rgb24.Length);
            var direct = options.Decoder.Decode(bytes, options);
            Assert.Equal(decoded.Width, direct.Width);
            if (c.Ops.Length % 3 == 0) Assert.Equal(3 * 32 * 32, ImagePreprocessor.ToPixelValues(ImageInput.FromBytes(bytes), 32, options).Length);
        }, Show, ciIterations: 3000, Allowed, output, Input);

    [Fact]
    public void Skia_decoder_only_ever_refuses_with_MiniGptImageException()
        => FuzzRunner.Run("image-decode-skia", Cases(), c =>
        {
            var options = new ImageDecodingOptions
            {
                AllowGif = Options[c.Options].AllowGif, AllowTiff = Options[c.Options].AllowTiff,
                MaxPixels = Options[c.Options].MaxPixels, Decoder = SkiaImageDecoder.Instance,
            };
            var bytes = Input(c);
            var decoded = ImagePreprocessor.Decode(ImageInput.FromBytes(bytes), options);
            Assert.Equal((long)decoded.Width * decoded.Height * 3, decoded.Rgb24.Length);
            SkiaImageDecoder.Instance.Decode(bytes, options);
        }, Show, ciIterations: 1600, Allowed, output, Input);
}
