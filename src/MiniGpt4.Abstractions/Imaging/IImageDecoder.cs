namespace MiniGpt4;

/// <summary>
/// Turns encoded image bytes into RGB pixels. Implement it to plug in another decoding library.
/// An implementation honours <see cref="ImageDecodingOptions"/> (pixel budget, allowed formats,
/// EXIF orientation), detects the format from the content, drops alpha without compositing, expands
/// grey to RGB, and throws <see cref="MiniGptImageException"/> for any input it refuses or cannot decode.
/// </summary>
public interface IImageDecoder
{
    /// <summary>Decodes one image.</summary>
    /// <param name="encoded">The complete encoded file.</param>
    /// <param name="options">The limits to apply.</param>
    /// <returns>The first frame as packed RGB24 pixels.</returns>
    /// <exception cref="MiniGptImageException">The data is refused or cannot be decoded.</exception>
    DecodedImage Decode(ReadOnlyMemory<byte> encoded, ImageDecodingOptions options);
}

/// <summary>Decoded pixels: <paramref name="Height"/> rows of <paramref name="Width"/> pixels, R, G, B bytes, no row padding.</summary>
/// <param name="Width">Width in pixels.</param>
/// <param name="Height">Height in pixels.</param>
/// <param name="Rgb24">Exactly <c>Width * Height * 3</c> bytes, HWC order.</param>
public sealed record DecodedImage(int Width, int Height, ReadOnlyMemory<byte> Rgb24);
