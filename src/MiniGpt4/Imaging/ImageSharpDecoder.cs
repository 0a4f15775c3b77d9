using System.Collections.Concurrent;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats;
using SixLabors.ImageSharp.Formats.Bmp;
using SixLabors.ImageSharp.Formats.Gif;
using SixLabors.ImageSharp.Formats.Jpeg;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.Formats.Tiff;
using SixLabors.ImageSharp.Formats.Webp;
using SixLabors.ImageSharp.Memory;
using SixLabors.ImageSharp.Metadata;
using SixLabors.ImageSharp.PixelFormats;
using SixLabors.ImageSharp.Processing;

namespace MiniGpt4.Imaging;

/// <summary>
/// The default decoder: SixLabors.ImageSharp 2.1 (managed code), run with a restricted <see cref="Configuration"/> per
/// option set: only the JPEG, PNG, WebP and BMP decoders (GIF and TIFF only when allowed, first frame only), and a
/// memory allocator whose per-buffer limit follows the pixel budget. The bytes are checked first
/// (<see cref="ImageLimits.CheckEncoded"/>: byte limit, format, declared size, completeness), then the header is
/// identified by ImageSharp itself and checked against the same limits again before decoding. Its JPEG decoder is not
/// libjpeg-turbo: decoded JPEG pixels differ from Pillow's (docs/imaging.md).
/// </summary>
internal sealed class ImageSharpDecoder : IImageDecoder
{
    public static ImageSharpDecoder Instance { get; } = new();

    private static readonly ConcurrentDictionary<(bool Gif, bool Tiff, int LimitMb), Configuration> Configurations = new();

    public DecodedImage Decode(ReadOnlyMemory<byte> encoded, ImageDecodingOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        string name = EncodedImageInspector.Name(ImageLimits.CheckEncoded(encoded.Span, options).Format);
        var config = ConfigurationFor(options);
        try
        {
            var info = Image.Identify(config, AsStream(encoded), out _)
                ?? throw new MiniGptImageException($"The {name} image could not be read: ImageSharp does not recognise its header.");
            ImageLimits.CheckSize(name, info.Width, info.Height, options);

            using var image = Image.Load<Rgb24>(config, AsStream(encoded));
            if (options.ApplyExifOrientation) image.Mutate(x => x.AutoOrient());
            ImageLimits.CheckSize("decoded", image.Width, image.Height, options, "after decoding (ImageSharp decoded a larger image than the header declared)");
            var rgb = new byte[checked(image.Width * image.Height * 3)];
            image.CopyPixelDataTo(rgb);
            return new DecodedImage(image.Width, image.Height, rgb);
        }
        catch (Exception e) when (e is ImageFormatException or InvalidMemoryOperationException or NotSupportedException
                                       or InvalidDataException or ArgumentException or IndexOutOfRangeException
                                       or InvalidOperationException or OverflowException or OutOfMemoryException)
        {
            throw new MiniGptImageException($"The {name} image could not be decoded: {e.Message}", e);
        }
    }

    private static MemoryStream AsStream(ReadOnlyMemory<byte> encoded)
        => System.Runtime.InteropServices.MemoryMarshal.TryGetArray(encoded, out var segment)
            ? new MemoryStream(segment.Array!, segment.Offset, segment.Count, writable: false)
            : new MemoryStream(encoded.ToArray(), writable: false);

    private static Configuration ConfigurationFor(ImageDecodingOptions options)
    {
        // One buffer may hold 4 bytes per pixel of the budget (Rgba32 or float intermediates), plus 32 MB of slack.
        // No image gets past ImageLimits with more than MaxRgbPixels pixels (and MaxPixels * 4 could overflow).
        int limitMb = (int)(Math.Min(options.MaxPixels, ImageLimits.MaxRgbPixels) * 4 / (1024 * 1024) + 32);
        return Configurations.GetOrAdd((options.AllowGif, options.AllowTiff, limitMb), static key =>
        {
            var modules = new List<IConfigurationModule>
            {
                new JpegConfigurationModule(), new PngConfigurationModule(), new WebpConfigurationModule(), new BmpConfigurationModule(),
            };
            if (key.Gif) modules.Add(new GifConfigurationModule());
            if (key.Tiff) modules.Add(new TiffConfigurationModule());
            var config = new Configuration([.. modules])
            {
                MemoryAllocator = MemoryAllocator.Create(new MemoryAllocatorOptions { AllocationLimitMegabytes = key.LimitMb }),
            };
            // Decode only the first frame/page: MiniGPT-4 sees one image, and every further frame costs memory.
            // (ImageSharp 2.1 decodes every frame of an animated WebP; EncodedImageInspector charges them all to the budget.)
            if (key.Gif) config.ImageFormatsManager.SetDecoder(GifFormat.Instance, new GifDecoder { DecodingMode = FrameDecodingMode.First });
            if (key.Tiff) config.ImageFormatsManager.SetDecoder(TiffFormat.Instance, new TiffDecoder { DecodingMode = FrameDecodingMode.First });
            return config;
        });
    }
}
