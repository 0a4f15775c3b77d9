using MiniGpt4.Imaging;
using Xunit;

namespace MiniGpt4.Tests.Imaging;

/// <summary>First-principles properties of the Pillow bicubic port (the oracle tests check exact values).</summary>
public class ResizeTests
{
    [Fact]
    public void Same_size_resize_is_a_copy()
    {
        var rgb = TestImages.Quadrants(10, 6);
        var resized = ImagePreprocessor.ResizeBicubic(new DecodedImage(10, 6, rgb), 10, 6);
        Assert.Equal(rgb, resized);
        Assert.NotSame(rgb, resized);
    }

    [Theory]
    [InlineData(640, 480, 224, 224)]
    [InlineData(224, 300, 224, 224)] // vertical pass only
    [InlineData(300, 224, 224, 224)] // horizontal pass only
    [InlineData(3, 2, 448, 448)]
    [InlineData(1, 1, 7, 3)]
    [InlineData(1000, 5, 2, 9)]
    public void A_flat_image_stays_flat(int w, int h, int outW, int outH)
    {
        // The weights of every output pixel sum to one, so a constant image is reproduced exactly.
        var rgb = new byte[w * h * 3];
        for (int i = 0; i < rgb.Length; i += 3) { rgb[i] = 17; rgb[i + 1] = 128; rgb[i + 2] = 255; }
        var resized = ImagePreprocessor.ResizeBicubic(new DecodedImage(w, h, rgb), outW, outH);
        Assert.Equal(outW * outH * 3, resized.Length);
        for (int i = 0; i < resized.Length; i += 3)
            Assert.Equal((17, 128, 255), (resized[i], resized[i + 1], resized[i + 2]));
    }

    [Theory]
    [InlineData(640, 224)]
    [InlineData(100, 448)]
    [InlineData(224, 224)]
    [InlineData(5, 3)]
    public void Coefficient_rows_are_normalised_and_inside_the_source(int inSize, int outSize)
    {
        var c = PillowBicubicResampler.Compute(inSize, outSize);
        for (int i = 0; i < outSize; i++)
        {
            Assert.InRange(c.First[i], 0, inSize - 1);
            Assert.InRange(c.First[i] + c.Count[i], 1, inSize);
            Assert.InRange(c.Count[i], 1, c.Stride);
            long sum = c.Weights.AsSpan(i * c.Stride, c.Count[i]).ToArray().Sum(x => (long)x);
            // each weight is rounded to 1/2^22 once: the sum is 1 within one unit per tap
            Assert.InRange(sum, (1L << 22) - c.Count[i], (1L << 22) + c.Count[i]);
        }
    }

    [Fact]
    public void Bad_sizes_are_argument_errors()
    {
        var img = new DecodedImage(2, 2, new byte[12]);
        Assert.Throws<ArgumentOutOfRangeException>(() => ImagePreprocessor.ResizeBicubic(img, 0, 5));
        Assert.Throws<ArgumentException>(() => ImagePreprocessor.ResizeBicubic(new DecodedImage(2, 2, new byte[11]), 4, 4));
    }
}
