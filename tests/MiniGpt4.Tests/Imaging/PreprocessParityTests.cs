using MiniGpt4.Imaging;
using MiniGpt4.Imaging.Skia;
using MiniGpt4.Tests.Support;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt4.Tests.Imaging;

/// <summary>Decode + resize + normalise against what the reference computed (oracle/preprocess*).</summary>
public class PreprocessParityTests(ITestOutputHelper output)
{
    private static readonly ImageDecodingOptions Skia = new() { Decoder = SkiaImageDecoder.Instance };

    public static TheoryData<string, int> Cases()
    {
        var data = new TheoryData<string, int>();
        foreach (var (stem, _) in Oracle.Images) data.Add(stem, 224);
        data.Add(Oracle.ImageA, 448);
        data.Add(Oracle.ImageB, 448);
        return data;
    }

    public static TheoryData<string, int> PngCases()
    {
        var data = new TheoryData<string, int>();
        foreach (var (stem, ext) in Oracle.Images) if (ext == "png") data.Add(stem, 224);
        data.Add(Oracle.ImageA, 448);
        return data;
    }

    /// <summary>The resize alone, fed the reference's own decoded pixels where it saved them.</summary>
    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Resize_equals_pillow_exactly(string stem, int size)
    {
        var decoded = ReferenceDecoded(stem);
        var resized = ImagePreprocessor.ResizeBicubic(decoded, size, size);
        var expected = Oracle.Preprocessed(stem, size, "resized_rgb_u8");
        Assert.Equal(new long[] { size, size, 3 }, expected.Shape);
        var (max, _, differing) = ImageCompare.Bytes(resized, expected.ToBytes());
        Assert.True(differing == 0, $"{stem} {size}: {differing} bytes differ, max {max}");
    }

    /// <summary>The whole pipeline from the file (Skia decoder: libjpeg-turbo like Pillow) equals the reference.</summary>
    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Pixel_values_match_reference_with_skia_decoder(string stem, int size)
    {
        var values = ImagePreprocessor.ToPixelValues(ImageInput.FromFile(Oracle.Image(stem)), size, Skia);
        var expected = Oracle.Preprocessed(stem, size, "pixel_values");
        Assert.Equal(new long[] { 1, 3, size, size }, expected.Shape);
        var (max, _) = ImageCompare.Floats(values, expected.ToFloat());
        output.WriteLine($"{stem} {size} skia: pixel_values max abs diff {max:G3}");
        Assert.True(max <= 1e-6, $"max abs diff {max}");
    }

    /// <summary>PNG images give the same pixels with the default (ImageSharp) decoder.</summary>
    [SkippableTheory]
    [MemberData(nameof(PngCases))]
    public void Pixel_values_match_reference_with_default_decoder_for_png(string stem, int size)
    {
        var values = ImagePreprocessor.ToPixelValues(ImageInput.FromFile(Oracle.Image(stem)), size, ImageDecodingOptions.Default);
        var expected = Oracle.Preprocessed(stem, size, "pixel_values");
        var (max, _) = ImageCompare.Floats(values, expected.ToFloat());
        Assert.True(max <= 1e-6, $"max abs diff {max}");
    }

    [SkippableFact]
    public void Skia_decodes_the_jpeg_exactly_like_pillow()
    {
        var decoded = ImagePreprocessor.Decode(ImageInput.FromFile(Oracle.Image(Oracle.ImageB)), Skia);
        var expected = Oracle.Preprocessed(Oracle.ImageB, 224, "decoded_rgb_u8");
        Assert.Equal((100, 300), (decoded.Width, decoded.Height));
        var (max, mean, differing) = ImageCompare.Bytes(decoded.Rgb24.Span, expected.ToBytes());
        output.WriteLine($"skia JPEG decode vs Pillow: {differing} of {expected.Data.Length} bytes differ, max {max}, mean {mean:G3}");
        Assert.Equal(0, differing);
    }

    /// <summary>Measures (and bounds) what ImageSharp's JPEG decoder changes; the numbers go to docs/imaging.md.</summary>
    [SkippableFact]
    public void Jpeg_difference_of_the_default_decoder()
    {
        var path = Oracle.Image(Oracle.ImageB);
        var decoded = ImagePreprocessor.Decode(ImageInput.FromFile(path), ImageDecodingOptions.Default);
        var d = ImageCompare.Bytes(decoded.Rgb24.Span, Oracle.Preprocessed(Oracle.ImageB, 224, "decoded_rgb_u8").ToBytes());
        output.WriteLine($"ImageSharp JPEG decode vs Pillow: {d.Differing} bytes differ, max {d.Max}, mean {d.Mean:G4}");
        foreach (int size in new[] { 224, 448 })
        {
            var resized = ImagePreprocessor.ResizeBicubic(decoded, size, size);
            var r = ImageCompare.Bytes(resized, Oracle.Preprocessed(Oracle.ImageB, size, "resized_rgb_u8").ToBytes());
            var values = ImagePreprocessor.ToPixelValues(ImageInput.FromFile(path), size, ImageDecodingOptions.Default);
            var v = ImageCompare.Floats(values, Oracle.Preprocessed(Oracle.ImageB, size, "pixel_values").ToFloat());
            output.WriteLine($"  {size}: resized max {r.Max} mean {r.Mean:G4} ({r.Differing} differ); pixel_values max {v.Max:G4} mean {v.Mean:G4}");
            Assert.True(v.Max < 255.0 / 255 / 0.26, "a decoder difference cannot exceed the full range");
        }
        Assert.True(d.Max > 0, "ImageSharp now matches libjpeg-turbo: update docs/imaging.md");
    }

    private static DecodedImage ReferenceDecoded(string stem)
    {
        if (stem == Oracle.ImageB)
        {
            var npy = Oracle.Preprocessed(stem, 224, "decoded_rgb_u8");
            return new DecodedImage((int)npy.Shape[1], (int)npy.Shape[0], npy.ToBytes());
        }
        // PNG decoding is lossless: every decoder gives PIL's convert('RGB') pixels.
        return ImagePreprocessor.Decode(ImageInput.FromFile(Oracle.Image(stem)), ImageDecodingOptions.Default);
    }
}
