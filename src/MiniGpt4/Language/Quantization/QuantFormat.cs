namespace MiniGpt4.Language.Quantization;

/// <summary>How a linear layer's weight is stored.</summary>
internal enum QuantFormat
{
    /// <summary>Not quantized: the weight is a float tensor in the model's dtype.</summary>
    None,

    /// <summary>8-bit: one signed byte per weight (−127..127, stored +128) and one bf16 scale per 32 weights along the input.</summary>
    Q8,

    /// <summary>4-bit: one nibble per weight (−8..7, stored +8) and one bf16 scale per 32 weights along the input.</summary>
    Q4,

    /// <summary>
    /// Not quantized: the float16 weight as the file stores it (memory-mapped; a copy only if the system refuses the
    /// map), rounded to bfloat16 as each product reads it, so every result equals that of the weight converted to
    /// bfloat16 while loading.
    /// </summary>
    F16,
}

/// <summary>
/// The packed layout of <see cref="QuantFormat.Q8"/> and <see cref="QuantFormat.Q4"/> weights (docs/quantization.md).
/// A row of <c>n</c> inputs is padded with zero weights to a multiple of <see cref="SuperWeights"/> (512) and cut into
/// blocks of <see cref="BlockWeights"/> (32), each with one scale. Sixteen consecutive blocks form a superblock whose
/// bytes are interleaved so that one 64-byte load holds four consecutive weights of each of the sixteen blocks: an
/// integer dot product (VNNI <c>vpdpbusd</c>) then accumulates every block in its own 32-bit lane, and the scales are
/// applied once per superblock with one vector multiply instead of once per block.
/// </summary>
/// <remarks>
/// <para>Q8, byte <c>64·j + 4·i + t</c> of superblock <c>s</c> holds weight <c>512·s + 32·i + 4·j + t</c> of the row
/// (block <c>i</c> of the superblock, group <c>j</c> of 8, <c>t</c> of 4), as <c>q + 128</c>.</para>
/// <para>Q4, byte <c>64·v + 4·i + t</c> (<c>v</c> of 4) of the superblock's 256 bytes holds group <c>j = v</c> in its low
/// nibble and group <c>j = v + 4</c> in its high nibble, as <c>q + 8</c>.</para>
/// <para>Scales are bf16, <c>[out, paddedIn / 32]</c> in natural block order; the weight is <c>q · scale</c>.</para>
/// </remarks>
internal static class QuantLayout
{
    /// <summary>The layout's name in file metadata (<c>quantization_layout</c>).</summary>
    public const string Name = "minigpt4-blocks32-super512-v1";

    /// <summary>Weights per block (one scale each).</summary>
    public const int BlockWeights = 32;

    /// <summary>Blocks per superblock (the lanes of a 512-bit vector of 32-bit sums).</summary>
    public const int SuperBlocks = 16;

    /// <summary>Weights per superblock.</summary>
    public const int SuperWeights = BlockWeights * SuperBlocks;

    /// <summary><paramref name="n"/> rounded up to whole superblocks.</summary>
    public static long PaddedInputs(long n) => (n + SuperWeights - 1) / SuperWeights * SuperWeights;

    /// <summary>Scales (blocks) per row of <paramref name="n"/> inputs.</summary>
    public static long BlocksPerRow(long n) => PaddedInputs(n) / BlockWeights;

    /// <summary>Packed bytes per row of <paramref name="n"/> inputs.</summary>
    public static long RowBytes(QuantFormat format, long n) => format switch
    {
        QuantFormat.Q8 => PaddedInputs(n),
        QuantFormat.Q4 => PaddedInputs(n) / 2,
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "not a quantized format"),
    };

    /// <summary>Bytes one row reads per token (packed weights plus bf16 scales).</summary>
    public static long RowBytesWithScales(QuantFormat format, long n) => RowBytes(format, n) + 2 * BlocksPerRow(n);

    /// <summary>The byte of a Q8 row holding weight <paramref name="k"/>.</summary>
    public static long Q8Byte(long k)
    {
        long s = k / SuperWeights, r = k % SuperWeights, i = r / BlockWeights, j = r % BlockWeights / 4, t = k % 4;
        return s * SuperWeights + 64 * j + 4 * i + t;
    }

    /// <summary>The byte of a Q4 row holding weight <paramref name="k"/>, and whether it is the high nibble.</summary>
    public static (long Byte, bool High) Q4Byte(long k)
    {
        long s = k / SuperWeights, r = k % SuperWeights, i = r / BlockWeights, j = r % BlockWeights / 4, t = k % 4;
        return (s * (SuperWeights / 2) + 64 * (j % 4) + 4 * i + t, j >= 4);
    }

    /// <summary>The state-dict key suffix of the packed weight (<c>q8_weight</c>, <c>q4_weight</c>).</summary>
    public static string WeightName(QuantFormat format) => format switch
    {
        QuantFormat.Q8 => "q8_weight",
        QuantFormat.Q4 => "q4_weight",
        _ => "weight",
    };

    /// <summary>The state-dict key suffix of the scales (<c>q8_scales</c>, <c>q4_scales</c>).</summary>
    public static string ScalesName(QuantFormat format) => format switch
    {
        QuantFormat.Q8 => "q8_scales",
        QuantFormat.Q4 => "q4_scales",
        _ => throw new ArgumentOutOfRangeException(nameof(format), format, "not a quantized format"),
    };

    /// <summary>Bits per weight read per token for a row of <paramref name="n"/> inputs (padding included).</summary>
    public static double BitsPerWeight(QuantFormat format, long n) => format is QuantFormat.None or QuantFormat.F16
        ? 16
        : 8.0 * RowBytesWithScales(format, n) / n;
}
