namespace MiniGpt4.Imaging;

/// <summary>
/// uint8 HWC RGB -> float32 CHW normalised with the OpenAI-CLIP mean and std, in the reference's
/// float32 operation order (torchvision <c>ToTensor</c> then <c>Normalize</c>):
/// <c>(x / 255f - mean_f32) / std_f32</c>, which reproduces its values bit for bit.
/// </summary>
internal static class ClipNormalizer
{
    private static readonly float[] Mean = [0.48145466f, 0.4578275f, 0.40821073f];
    private static readonly float[] Std = [0.26862954f, 0.26130258f, 0.27577711f];

    /// <summary>The 256 possible outputs per channel (<c>[channel * 256 + value]</c>), computed with the exact float32 operations.</summary>
    private static readonly float[] Table = BuildTable();

    private static float[] BuildTable()
    {
        var table = new float[3 * 256];
        for (int c = 0; c < 3; c++)
            for (int v = 0; v < 256; v++)
            {
                float x = v / 255f;        // ToTensor: float32 division
                float centred = x - Mean[c]; // Normalize: sub_ then div_, each rounded to float32
                table[c * 256 + v] = centred / Std[c];
            }
        return table;
    }

    /// <summary>Writes the <c>3 * pixels</c> normalised values of <paramref name="rgb"/> as planes R, G, B.</summary>
    public static void ToChw(ReadOnlySpan<byte> rgb, Span<float> chw)
    {
        int pixels = rgb.Length / 3;
        if (rgb.Length != pixels * 3 || chw.Length != rgb.Length)
            throw new ArgumentException($"need 3 values per pixel: {rgb.Length} bytes, {chw.Length} floats");
        for (int c = 0; c < 3; c++)
        {
            var plane = chw.Slice(c * pixels, pixels);
            var table = Table.AsSpan(c * 256, 256);
            for (int i = 0; i < pixels; i++) plane[i] = table[rgb[3 * i + c]];
        }
    }
}
