using MiniGpt4.Imaging;
using MiniGpt4.Imaging.Skia;
using MiniGpt4.Tests.Support;
using SixLabors.ImageSharp.Formats.Png;
using Xunit;

namespace MiniGpt4.Tests.Imaging;

/// <summary>
/// Every limit of <see cref="ImageDecodingOptions"/> holds for every input kind and both decoders,
/// and is enforced before decoding and before any allocation the size of the image.
/// </summary>
public class ImageLimitTests
{
    /// <summary>
    /// An exception and its message (about 3 KB), plus the 64 KiB header a stream that cannot seek keeps
    /// for its decode: far less than any of the refused images would need (60000 x 60000 RGB is 10.8 GB).
    /// </summary>
    private const long SmallAllocation = 128 * 1024;

    public static TheoryData<string> Decoders() => new() { "imagesharp", "skia" };

    public static TheoryData<string, string> BombCases()
    {
        var data = new TheoryData<string, string>();
        foreach (var format in new[] { "png", "jpeg", "bmp", "gif", "webp" })
            foreach (var decoder in new[] { "imagesharp", "skia" })
                data.Add(format, decoder);
        return data;
    }

    private static ImageDecodingOptions For(string decoder, long maxPixels = ImageDecodingOptions.DefaultMaxPixels,
                                            long maxBytes = ImageDecodingOptions.DefaultMaxEncodedBytes)
        => new()
        {
            Decoder = decoder == "skia" ? SkiaImageDecoder.Instance : ImageSharpDecoder.Instance,
            AllowGif = true, MaxPixels = maxPixels, MaxEncodedBytes = maxBytes,
        };

    /// <summary>Runs <paramref name="action"/>, which must throw <see cref="MiniGptImageException"/>; returns it and the bytes this thread allocated meanwhile.</summary>
    private static (MiniGptImageException Error, long Allocated) Refused(Action action)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        MiniGptImageException? error = null;
        try { action(); }
        catch (MiniGptImageException e) { error = e; }
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.True(error is not null, "the image was accepted");
        return (error!, allocated);
    }

    private static void Decode(ImageInput input, ImageDecodingOptions options) => ImagePreprocessor.ToPixelValues(input, 224, options);

    // ------------------------------------------------------------------ raw RGB

    [Fact]
    public void Rgb_input_over_MaxPixels_is_refused_before_resizing()
    {
        var options = new ImageDecodingOptions { MaxPixels = 10_000 };
        var image = ImageInput.FromRgb(200, 200, new byte[200 * 200 * 3]);
        var (e, allocated) = Refused(() => Decode(image, options));
        Assert.Contains("200x200", e.Message);
        Assert.Contains("MaxPixels = 10,000", e.Message);
        Assert.True(allocated < 16 * 1024, $"{allocated} bytes allocated"); // no 224x224 output, no resize buffers
        // The budget is inclusive, as for encoded images.
        Assert.Equal(100, ImagePreprocessor.Decode(ImageInput.FromRgb(100, 100, new byte[100 * 100 * 3]), options).Width);
    }

    // ------------------------------------------------------------------ bytes

    [Fact]
    public void Stream_input_over_the_byte_limit_is_refused_from_its_length_without_reading_it()
    {
        var stream = new CountingStream(TestImages.Png(10, 10, new byte[31 * 10]), zeros: 1000);
        var (e, _) = Refused(() => Decode(ImageInput.FromStream(stream), new ImageDecodingOptions { MaxEncodedBytes = 100 }));
        Assert.Contains("MaxEncodedBytes = 100", e.Message);
        Assert.Equal(0, stream.BytesRead);
    }

    [Fact]
    public void A_stream_that_cannot_seek_is_read_only_up_to_the_byte_limit()
    {
        // Endless: reading it all would never end.
        var stream = new CountingStream(TestImages.Png(10, 10, new byte[31 * 10]), zeros: -1, seekable: false);
        var (e, _) = Refused(() => Decode(ImageInput.FromStream(stream), new ImageDecodingOptions { MaxEncodedBytes = 1000 }));
        Assert.Contains("MaxEncodedBytes = 1,000", e.Message);
        Assert.InRange(stream.BytesRead, 1001, 1001); // one byte past the limit proves the stream is over it
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void A_stream_declaring_a_huge_image_is_refused_after_its_header(bool seekable)
    {
        // A 60000x60000 PNG header followed by 8 MB: only the header is read.
        var stream = new CountingStream(TestImages.DeclaringSize("png", 60000, 60000), zeros: 8 << 20, seekable);
        var (e, allocated) = Refused(() => Decode(ImageInput.FromStream(stream), ImageDecodingOptions.Default));
        Assert.Contains("60000x60000", e.Message);
        Assert.Contains("MaxPixels = 40,000,000", e.Message);
        Assert.True(stream.BytesRead <= 64 * 1024, $"{stream.BytesRead} bytes read");
        Assert.True(allocated < SmallAllocation, $"{allocated} bytes allocated");
    }

    [Fact]
    public void A_file_over_the_byte_limit_is_refused_from_its_length()
    {
        using var dir = new TempDir();
        var path = dir.File("huge.png");
        using (var f = File.Create(path))
        {
            f.Write(TestImages.Png(10, 10, new byte[31 * 10]));
            f.SetLength(ImageDecodingOptions.DefaultMaxEncodedBytes + 1); // sparse: costs no disk
        }
        var (e, allocated) = Refused(() => Decode(ImageInput.FromFile(path), ImageDecodingOptions.Default));
        Assert.Contains(path, e.Message);
        Assert.Contains("268,435,457 bytes", e.Message);
        Assert.Contains("MaxEncodedBytes = 268,435,456", e.Message);
        Assert.True(allocated < SmallAllocation, $"{allocated} bytes allocated");
    }

    [Fact]
    public void Byte_input_over_the_byte_limit_is_refused()
    {
        var png = TestImages.Encode(TestImages.Quadrants(16, 16), 16, 16, new PngEncoder());
        var options = new ImageDecodingOptions { MaxEncodedBytes = png.Length - 1 };
        var (e, _) = Refused(() => Decode(ImageInput.FromBytes(png), options));
        Assert.Contains($"MaxEncodedBytes = {png.Length - 1:N0}", e.Message);
        Assert.Equal(16, ImagePreprocessor.Decode(ImageInput.FromBytes(png), new ImageDecodingOptions { MaxEncodedBytes = png.Length }).Width);
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void Each_decoder_alone_applies_the_byte_limit(string decoder)
    {
        var png = TestImages.Encode(TestImages.Quadrants(16, 16), 16, 16, new PngEncoder());
        var options = For(decoder, maxBytes: 100);
        var (e, _) = Refused(() => options.Decoder.Decode(png, options));
        Assert.Contains("MaxEncodedBytes = 100", e.Message);
    }

    [Theory]
    [MemberData(nameof(Decoders))]
    public void The_largest_limits_do_not_overflow(string decoder)
    {
        var options = new ImageDecodingOptions
        {
            Decoder = For(decoder).Decoder, MaxEncodedBytes = long.MaxValue, MaxPixels = long.MaxValue, MaxDimension = int.MaxValue,
        };
        var png = TestImages.Encode(TestImages.Quadrants(16, 16), 16, 16, new PngEncoder());
        Assert.Equal(16, ImagePreprocessor.Decode(ImageInput.FromStream(new CountingStream(png, seekable: false)), options).Width);
        Assert.Equal(16, ImagePreprocessor.Decode(ImageInput.FromStream(new MemoryStream(png)), options).Width);
        var (e, _) = Refused(() => options.ThrowIfOverLimits("PNG", 1_000_000, 1_000_000));
        Assert.Contains("would not fit in one .NET array", e.Message);
    }

    [Fact]
    public void The_largest_pixel_budget_does_not_shrink_the_ImageSharp_allocator_limit()
    {
        // MaxPixels * 4 bytes once wrapped round to a 32 MB allocator limit: a 36 MB image failed to decode.
        var rgb = TestImages.Quadrants(4000, 3000);
        var png = TestImages.Encode(rgb, 4000, 3000, new PngEncoder());
        var options = new ImageDecodingOptions { MaxPixels = long.MaxValue };
        Assert.Equal(4000, ImagePreprocessor.Decode(ImageInput.FromBytes(png), options).Width);
    }

    // ------------------------------------------------------------------ declared pixels

    [Theory]
    [MemberData(nameof(BombCases))]
    public void A_header_declaring_60000x60000_is_refused_for_every_input_kind_without_allocating(string format, string decoder)
    {
        var bomb = TestImages.DeclaringSize(format, 60000, 60000);
        using var dir = new TempDir();
        var path = dir.File("bomb");
        File.WriteAllBytes(path, bomb);
        var options = For(decoder);
        foreach (var (kind, input) in new (string, Func<ImageInput>)[]
                 {
                     ("bytes", () => ImageInput.FromBytes(bomb)),
                     ("file", () => ImageInput.FromFile(path)),
                     ("stream", () => ImageInput.FromStream(new MemoryStream(bomb))),
                     ("non-seekable stream", () => ImageInput.FromStream(new CountingStream(bomb, seekable: false))),
                 })
        {
            var image = input();
            var (e, allocated) = Refused(() => Decode(image, options));
            Assert.True(e.Message.Contains("60000x60000") && e.Message.Contains("MaxPixels = 40,000,000"), $"{format} {kind}: {e.Message}");
            Assert.True(allocated < SmallAllocation, $"{format} {kind}: {allocated} bytes allocated");
        }
    }

    [Theory]
    [MemberData(nameof(BombCases))]
    public void Each_decoder_alone_refuses_a_60000x60000_header_without_allocating(string format, string decoder)
    {
        var bomb = TestImages.DeclaringSize(format, 60000, 60000);
        var options = For(decoder);
        var (e, allocated) = Refused(() => options.Decoder.Decode(bomb, options));
        Assert.True(e.Message.Contains("60000x60000") && e.Message.Contains("MaxPixels = 40,000,000"), e.Message);
        Assert.True(allocated < SmallAllocation, $"{allocated} bytes allocated");
    }

    // ------------------------------------------------------------------ width and height

    [Fact]
    public void A_side_over_MaxDimension_is_refused_for_encoded_and_rgb_input()
    {
        // 70000 x 1 is within the pixel budget, but its bicubic weight tables alone would be large.
        var png = TestImages.DeclaringSize("png", 70000, 1);
        foreach (var decoder in new[] { "imagesharp", "skia" })
        {
            var (e, _) = Refused(() => Decode(ImageInput.FromBytes(png), For(decoder)));
            Assert.Contains("width 70,000 is over ImageDecodingOptions.MaxDimension = 65,535", e.Message);
            (e, _) = Refused(() => For(decoder).Decoder.Decode(png, For(decoder)));
            Assert.Contains("MaxDimension = 65,535", e.Message);
        }
        var rgb = ImageInput.FromRgb(1, 70000, new byte[70000 * 3]);
        Assert.Contains("height 70,000 is over ImageDecodingOptions.MaxDimension = 65,535", Refused(() => Decode(rgb, ImageDecodingOptions.Default)).Error.Message);
        var narrow = new ImageDecodingOptions { MaxDimension = 100 };
        Assert.Equal(100, ImagePreprocessor.Decode(ImageInput.FromRgb(100, 2, new byte[600]), narrow).Width); // inclusive
        Assert.Contains("MaxDimension = 100", Refused(() => Decode(ImageInput.FromRgb(101, 2, new byte[606]), narrow)).Error.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ImageDecodingOptions { MaxDimension = 0 });
        Assert.Equal(65_535, ImageDecodingOptions.Default.MaxDimension);
    }

    // ------------------------------------------------------------------ decoded pixels

    [Fact]
    public void A_decoder_returning_more_pixels_than_the_limits_allow_is_refused()
    {
        var png = TestImages.Encode(TestImages.Quadrants(100, 100), 100, 100, new PngEncoder());
        var options = new ImageDecodingOptions { MaxPixels = 10_000, Decoder = new Inflating() };
        var (e, _) = Refused(() => ImagePreprocessor.Decode(ImageInput.FromBytes(png), options));
        Assert.Contains("The decoded image is 101x101", e.Message);
        Assert.Contains("MaxPixels = 10,000", e.Message);
    }

    /// <summary>A decoder whose output is larger than the header it was given.</summary>
    private sealed class Inflating : IImageDecoder
    {
        public DecodedImage Decode(ReadOnlyMemory<byte> encoded, ImageDecodingOptions options) => new(101, 101, new byte[101 * 101 * 3]);
    }

    // ------------------------------------------------------------------ the admission check

    public static TheoryData<string> InputKinds() => new() { "bytes", "file", "stream", "non-seekable stream", "rgb" };

    [Theory]
    [MemberData(nameof(InputKinds))]
    public void Inspect_gives_the_declared_size_and_leaves_the_input_usable(string kind)
    {
        // 200 KB of metadata after the header: more than Inspect reads.
        var png = TestImages.PngWithPadding(31, 17, 200_000);
        var expected = ImagePreprocessor.Decode(ImageInput.FromBytes(png), ImageDecodingOptions.Default);
        using var dir = new TempDir();
        var path = dir.File("image.png");
        File.WriteAllBytes(path, png);
        var counting = new CountingStream(png, seekable: kind == "stream");
        var input = kind switch
        {
            "bytes" => ImageInput.FromBytes(png),
            "file" => ImageInput.FromFile(path),
            "rgb" => ImageInput.FromRgb(31, 17, expected.Rgb24),
            _ => ImageInput.FromStream(counting),
        };

        var info = input.Inspect(ImageDecodingOptions.Default);
        Assert.Equal((31L, 17L), (info.Width, info.Height));
        Assert.True(info.SizeKnown);
        Assert.Equal(31 * 17 * 3, info.DecodedBytes(ImageDecodingOptions.Default));
        Assert.Equal(kind == "rgb" ? EncodedImageFormat.Unknown : EncodedImageFormat.Png, info.Format);
        Assert.Equal(kind switch { "rgb" => 31 * 17 * 3, "non-seekable stream" => -1, _ => png.Length }, info.ByteSize);
        if (kind.Contains("stream"))
        {
            Assert.True(counting.BytesRead <= ImageInputReader.HeaderBytes, $"{counting.BytesRead} bytes read");
            if (kind == "stream") Assert.Equal(0, counting.Position); // back where it was
        }
        Assert.Equal(info, input.Inspect(ImageDecodingOptions.Default)); // again: same answer, nothing used up

        var decoded = ImagePreprocessor.Decode(input, ImageDecodingOptions.Default);
        Assert.Equal(expected.Rgb24.ToArray(), decoded.Rgb24.ToArray());
        // A stream that cannot seek is read once in all: the decode starts with the bytes Inspect kept.
        if (kind == "non-seekable stream") Assert.Equal(png.Length, counting.BytesRead);
        // A seekable one is read again from where it was: its header by each Inspect (the two above and
        // the decode's own), then all of it.
        if (kind == "stream") Assert.Equal(3L * ImageInputReader.HeaderBytes + png.Length, counting.BytesRead);
    }

    [Theory]
    [InlineData("bytes")]
    [InlineData("rgb")]
    [InlineData("file")]
    public void Inspect_allocates_nothing_the_size_of_the_image(string kind)
    {
        var png = TestImages.PngWithPadding(64, 64, 500_000);
        using var dir = new TempDir();
        var path = dir.File("image.png");
        File.WriteAllBytes(path, png);
        var input = kind switch
        {
            "bytes" => ImageInput.FromBytes(png),
            "rgb" => ImageInput.FromRgb(64, 64, new byte[64 * 64 * 3]),
            _ => ImageInput.FromFile(path),
        };
        input.Inspect(ImageDecodingOptions.Default); // warm-up: pooled header buffers, JIT
        long before = GC.GetAllocatedBytesForCurrentThread();
        var info = input.Inspect(ImageDecodingOptions.Default);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal(64, info.Width);
        // RGB: nothing; bytes: a few chunk names; file: the FileStream and its handle.
        Assert.True(allocated <= (kind == "rgb" ? 0 : 4096), $"{allocated} bytes allocated");
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void Inspect_reads_further_for_a_jpeg_whose_size_comes_after_large_metadata(bool seekable)
    {
        // Three 64 KB APP segments put the frame header past the first 64 KiB but within 1 MiB.
        var jpg = TestImages.JpegWithMetadata(40, 30, segments: 3);
        var stream = new CountingStream(jpg, seekable: seekable);
        var input = ImageInput.FromStream(stream);
        var info = input.Inspect(ImageDecodingOptions.Default);
        Assert.Equal((40L, 30L), (info.Width, info.Height));
        Assert.InRange(stream.BytesRead, ImageInputReader.HeaderBytes + 1, ImageInputReader.MaxHeaderBytes);
        Assert.Equal(40, ImagePreprocessor.Decode(input, ImageDecodingOptions.Default).Width);
    }

    [Fact]
    public void A_size_past_the_header_window_is_checked_when_the_image_is_read()
    {
        // 17 segments: the frame header lies past 1 MiB; Inspect cannot see the size.
        var jpg = TestImages.JpegWithMetadata(40, 30, segments: 17);
        var info = ImageInput.FromStream(new MemoryStream(jpg)).Inspect(ImageDecodingOptions.Default);
        Assert.False(info.SizeKnown);
        Assert.Equal(EncodedImageFormat.Jpeg, info.Format);
        Assert.Equal(jpg.Length, info.ByteSize);
        Assert.Equal(ImageDecodingOptions.Default.MaxPixels * 3, info.DecodedBytes(ImageDecodingOptions.Default));
        Assert.Equal(40, ImagePreprocessor.Decode(ImageInput.FromStream(new MemoryStream(jpg)), ImageDecodingOptions.Default).Width);
        var tight = new ImageDecodingOptions { MaxPixels = 1000 };
        var e = Refused(() => Decode(ImageInput.FromStream(new CountingStream(jpg, seekable: false)), tight)).Error;
        Assert.Contains("40x30 = 1,200 pixels", e.Message);
    }

    [Fact]
    public void Inspect_refuses_with_the_source_named()
    {
        var tight = new ImageDecodingOptions { MaxPixels = 10_000 };
        var e = Assert.Throws<MiniGptImageException>(() => ImageInput.FromRgb(200, 200, new byte[120_000]).Inspect(tight));
        Assert.StartsWith("RGB image 200x200: ", e.Message);
        Assert.Contains("MaxPixels = 10,000", e.Message);
        e = Assert.Throws<MiniGptImageException>(() => ImageInput.FromBytes(TestImages.DeclaringSize("jpeg", 60000, 60000)).Inspect(ImageDecodingOptions.Default));
        Assert.Contains("JPEG image is 60000x60000", e.Message);
        var missing = Path.Combine(Path.GetTempPath(), "minigpt4-no-such-image-" + Guid.NewGuid() + ".png");
        e = Assert.Throws<MiniGptImageException>(() => ImageInput.FromFile(missing).Inspect(ImageDecodingOptions.Default));
        Assert.Contains(missing, e.Message);
    }

    // ------------------------------------------------------------------ the rule for other decoders

    [Fact]
    public void Decoder_implementations_can_apply_the_same_rule()
    {
        var options = new ImageDecodingOptions { MaxPixels = 10_000, MaxDimension = 1000, MaxEncodedBytes = 1_000_000 };
        options.ThrowIfOverLimits("PNG", 100, 100);
        Assert.Contains("MaxPixels = 10,000", Assert.Throws<MiniGptImageException>(() => options.ThrowIfOverLimits("PNG", 101, 100)).Message);
        Assert.Contains("MaxDimension = 1,000", Assert.Throws<MiniGptImageException>(() => options.ThrowIfOverLimits("PNG", 1001, 1)).Message);
        Assert.Contains("empty size", Assert.Throws<MiniGptImageException>(() => options.ThrowIfOverLimits("PNG", 0, 1)).Message);

        options.ThrowIfRefused(TestImages.Encode(TestImages.Quadrants(16, 16), 16, 16, new PngEncoder()));
        Assert.Contains("MaxEncodedBytes = 1,000,000", Assert.Throws<MiniGptImageException>(() => options.ThrowIfRefused(new byte[1_000_001])).Message);
        Assert.Contains("MaxPixels", Assert.Throws<MiniGptImageException>(() => options.ThrowIfRefused(TestImages.DeclaringSize("bmp", 200, 200))).Message);
    }
}
