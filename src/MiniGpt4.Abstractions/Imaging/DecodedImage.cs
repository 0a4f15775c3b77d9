namespace MiniGpt4;

/// <summary>Decoded pixels: <paramref name="Height"/> rows of <paramref name="Width"/> pixels, R, G, B bytes, no row padding.</summary>
/// <param name="Width">Width in pixels.</param>
/// <param name="Height">Height in pixels.</param>
/// <param name="Rgb24">Exactly <c>Width * Height * 3</c> bytes, HWC order.</param>
public sealed record DecodedImage(int Width, int Height, ReadOnlyMemory<byte> Rgb24);
