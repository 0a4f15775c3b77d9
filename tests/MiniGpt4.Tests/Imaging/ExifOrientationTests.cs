using MiniGpt4.Imaging;
using MiniGpt4.Imaging.Skia;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Metadata.Profiles.Exif;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;
using Xunit;

namespace MiniGpt4.Tests.Imaging;

/// <summary>EXIF orientation is ignored by default (as PIL) and applied on request, the same by both decoders.</summary>
public class ExifOrientationTests
{
    private const int W = 48, H = 32;

    public static TheoryData<string, ushort> Cases()
    {
        var data = new TheoryData<string, ushort>();
        foreach (var decoder in new[] { "imagesharp", "skia" })
            for (ushort o = 1; o <= 8; o++) data.Add(decoder, o);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void Orientation_is_ignored_by_default_and_applied_when_asked(string decoder, ushort orientation)
    {
        var rgb = TestImages.Quadrants(W, H);
        var jpeg = TestImages.Encode(rgb, W, H, new JpegEncoder { Quality = 98 }, image =>
        {
            image.Metadata.ExifProfile = new ExifProfile();
            image.Metadata.ExifProfile.SetValue(ExifTag.Orientation, orientation);
        });
        IImageDecoder d = decoder == "skia" ? SkiaImageDecoder.Instance : ImageSharpDecoder.Instance;

        var asStored = ImagePreprocessor.Decode(ImageInput.FromBytes(jpeg), new ImageDecodingOptions { Decoder = d });
        Assert.Equal((W, H), (asStored.Width, asStored.Height));
        AssertClose(rgb, asStored.Rgb24.Span);

        var oriented = ImagePreprocessor.Decode(ImageInput.FromBytes(jpeg), new ImageDecodingOptions { Decoder = d, ApplyExifOrientation = true });
        var (expected, ew, eh) = Oriented(rgb, orientation);
        Assert.Equal((ew, eh), (oriented.Width, oriented.Height));
        AssertClose(expected, oriented.Rgb24.Span);
    }

    /// <summary>The expected display pixels, from ImageSharp's AutoOrient on the unencoded image.</summary>
    private static (byte[] Rgb, int W, int H) Oriented(byte[] rgb, ushort orientation)
    {
        using var image = Image.LoadPixelData<Rgb24>(rgb, W, H);
        image.Metadata.ExifProfile = new ExifProfile();
        image.Metadata.ExifProfile.SetValue(ExifTag.Orientation, orientation);
        image.Mutate(x => x.AutoOrient());
        var result = new byte[image.Width * image.Height * 3];
        image.CopyPixelDataTo(result);
        return (result, image.Width, image.Height);
    }

    /// <summary>JPEG is lossy: allow its error, which is far below what a wrong orientation of four flat quadrants gives.</summary>
    private static void AssertClose(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual)
    {
        var (_, mean, _) = ImageCompare.Bytes(expected, actual);
        Assert.True(mean < 4, $"mean abs diff {mean}");
    }
}
