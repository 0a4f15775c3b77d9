using MiniGpt4.Imaging;
using MiniGpt4.Imaging.Skia;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Imaging;

/// <summary>Every way of handing over an image gives the reference's pixel values.</summary>
public class ImageInputTests
{
    private static readonly ImageDecodingOptions Skia = new() { Decoder = SkiaImageDecoder.Instance };

    public static TheoryData<string> Kinds() => new() { "file", "stream", "nonseekable-stream", "bytes", "bytes-slice", "rgb" };

    [SkippableTheory]
    [MemberData(nameof(Kinds))]
    public void Every_input_kind_gives_the_reference_pixel_values(string kind)
    {
        foreach (var stem in new[] { Oracle.ImageA, Oracle.ImageB })
        {
            var path = Oracle.Image(stem);
            var bytes = File.ReadAllBytes(path);
            var input = kind switch
            {
                "file" => ImageInput.FromFile(path),
                "stream" => ImageInput.FromStream(new MemoryStream(bytes)),
                "nonseekable-stream" => ImageInput.FromStream(new NonSeekableStream(bytes)),
                "bytes" => ImageInput.FromBytes(bytes),
                "bytes-slice" => ImageInput.FromBytes(new byte[7].Concat(bytes).Concat(new byte[5]).ToArray().AsMemory(7, bytes.Length)),
                _ => FromRgb(stem, path),
            };
            var values = ImagePreprocessor.ToPixelValues(input, 224, Skia);
            var expected = Oracle.Preprocessed(stem, 224, "pixel_values").ToFloat();
            var (max, _) = ImageCompare.Floats(values, expected);
            Assert.True(max <= 1e-6, $"{kind} {stem}: max abs diff {max}");
        }
    }

    private static ImageInput FromRgb(string stem, string path)
    {
        var d = ImagePreprocessor.Decode(ImageInput.FromFile(path), Skia);
        return ImageInput.FromRgb(d.Width, d.Height, d.Rgb24.ToArray());
    }

    [SkippableFact]
    public void A_stream_is_read_from_its_current_position_and_left_open()
    {
        var bytes = File.ReadAllBytes(Oracle.Image(Oracle.ImageA));
        var stream = new MemoryStream(new byte[] { 1, 2, 3 }.Concat(bytes).ToArray());
        stream.Position = 3;
        var decoded = ImagePreprocessor.Decode(ImageInput.FromStream(stream), ImageDecodingOptions.Default);
        Assert.Equal((640, 480), (decoded.Width, decoded.Height));
        Assert.True(stream.CanRead);
    }

    [Fact]
    public void Rgb_input_with_a_wrong_size_is_refused()
    {
        var e = Assert.Throws<MiniGptImageException>(() => ImageInput.FromRgb(4, 4, new byte[47]));
        Assert.Contains("48 bytes", e.Message);
        Assert.Throws<MiniGptImageException>(() => ImageInput.FromRgb(0, 4, Array.Empty<byte>()));
        Assert.Throws<MiniGptImageException>(() => ImageInput.FromRgb(4, -1, Array.Empty<byte>()));
    }

    [Fact]
    public void Rgb_input_is_resized_without_decoding()
    {
        var rgb = TestImages.Quadrants(8, 6);
        var values = ImagePreprocessor.ToPixelValues(ImageInput.FromRgb(8, 6, rgb), 4, ImageDecodingOptions.Default);
        Assert.Equal(3 * 4 * 4, values.Length);
        // top-left output pixel lies in the red quadrant: R plane high, B plane low
        Assert.True(values[0] > 1.0f && values[2 * 16] < -1.0f);
    }

    [Fact]
    public void A_missing_file_is_an_image_error_naming_the_file()
    {
        var path = Path.Combine(Path.GetTempPath(), "minigpt4-no-such-image-" + Guid.NewGuid() + ".png");
        var e = Assert.Throws<MiniGptImageException>(() => ImagePreprocessor.Decode(ImageInput.FromFile(path), ImageDecodingOptions.Default));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Encoded_input_over_the_size_cap_is_refused_for_streams()
    {
        var options = new ImageDecodingOptions { MaxEncodedBytes = 100 };
        var e = Assert.Throws<MiniGptImageException>(() => ImagePreprocessor.Decode(ImageInput.FromStream(new NonSeekableStream(new byte[1000])), options));
        Assert.Contains("MaxEncodedBytes", e.Message);
        e = Assert.Throws<MiniGptImageException>(() => ImagePreprocessor.Decode(ImageInput.FromStream(new MemoryStream(new byte[1000])), options));
        Assert.Contains("MaxEncodedBytes", e.Message);
    }

    [Fact]
    public void Argument_errors_are_argument_exceptions()
    {
        Assert.Throws<ArgumentException>(() => ImageInput.FromFile(""));
        Assert.Throws<ArgumentNullException>(() => ImageInput.FromStream(null!));
        Assert.Throws<ArgumentOutOfRangeException>(() => new ImageDecodingOptions { MaxPixels = 0 });
        Assert.Throws<ArgumentNullException>(() => new ImageDecodingOptions { Decoder = null! });
    }

    /// <summary>A read-only stream that cannot seek (like a network stream).</summary>
    private sealed class NonSeekableStream(byte[] data) : MemoryStream(data, writable: false)
    {
        public override bool CanSeek => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => base.Position; set => throw new NotSupportedException(); }
    }
}
