using MiniGpt4.Imaging;
using Xunit;

namespace MiniGpt4.Tests.Fuzzing;

/// <summary>Regular regression tests for inputs that escaped the image checks as untyped exceptions.</summary>
public sealed class ImageInspectorRegressionTests
{
    [Theory]
    [InlineData(0xFFFFFFFFFFFFFFF8UL)] // ifd + 8 wrapped to 0: Slice(-8) threw ArgumentOutOfRangeException
    [InlineData(0xFFFFFFFFFFFFFFFFUL)]
    [InlineData(0x8000000000000000UL)]
    [InlineData(17UL)]
    public void A_BigTIFF_directory_offset_near_2_to_the_64_is_a_truncated_image(ulong ifd)
    {
        var tiff = new byte[64];
        "II"u8.CopyTo(tiff);
        tiff[2] = 43; tiff[4] = 8;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(tiff.AsSpan(8), ifd);
        var options = new ImageDecodingOptions { AllowTiff = true };
        var ex = Assert.Throws<MiniGptImageException>(() => EncodedImageInspector.Inspect(tiff, options));
        Assert.Contains("TIFF", ex.Message, StringComparison.Ordinal);
        Assert.Throws<MiniGptImageException>(() => ImagePreprocessor.Decode(ImageInput.FromBytes(tiff), options));
    }
}
