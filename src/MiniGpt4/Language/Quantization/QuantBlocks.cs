using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;
using MiniGpt4.Language.Kernels;
using static MiniGpt4.Language.Quantization.QuantLayout;

namespace MiniGpt4.Language.Quantization;

/// <summary>
/// Quantizes weight rows into the <see cref="QuantLayout"/> formats and back (the scalar reference, also used by
/// <c>convert</c> and quantize-at-load), and quantizes activation rows for the integer dot products.
/// </summary>
/// <remarks>
/// <para><b>Weights.</b> Q8 takes a block's scale as its largest magnitude over 127, rounded UP to a bf16 value, so
/// every weight maps into −127..127 and is off by at most half a step (<c>scale/2</c>). Q4 takes the block's value of
/// largest magnitude <c>m</c> and the scale <c>−m/8</c> (magnitude rounded up to bf16), so <c>m</c> maps to −8 and the
/// other end of the range keeps 7 steps: the error is at most one step (<c>|scale|</c>), half a step except for values
/// within half a step of <c>−8·scale</c>'s opposite end. An all-zero block gets scale 0.</para>
/// <para><b>Activations.</b> Each block of 32 becomes int8 with a float32 scale (largest magnitude over 127, rounded to
/// nearest-even), interleaved like a Q8 weight row, plus the block sums the kernels need to undo the weights' +128 / +8
/// offsets. A row is quantized once per product region and read by every weight row from L1/L2.</para>
/// </remarks>
internal static unsafe class QuantBlocks
{
    /// <summary>Quantizes weight row <paramref name="w"/> (<paramref name="n"/> float32 values) into <paramref name="packed"/> and <paramref name="scales"/>.</summary>
    public static void QuantizeRow(QuantFormat format, float* w, long n, byte* packed, ushort* scales)
    {
        var padded = PaddedInputs(n);
        new Span<byte>(packed, (int)RowBytes(format, n)).Fill(format == QuantFormat.Q8 ? (byte)128 : (byte)0x88);
        for (long b = 0; b < padded / BlockWeights; b++)
        {
            long first = b * BlockWeights, count = Math.Clamp(n - first, 0, BlockWeights);
            var (scale, bits) = BlockScale(format, w + first, count);
            scales[b] = bits;
            if (scale == 0f) continue;
            for (long k = first; k < first + count; k++)
            {
                var q = MathF.Round(w[k] / scale);
                if (format == QuantFormat.Q8) packed[Q8Byte(k)] = (byte)(Math.Clamp(q, -127f, 127f) + 128f);
                else
                {
                    var nibble = (byte)(Math.Clamp(q, -8f, 7f) + 8f);
                    var (at, high) = Q4Byte(k);
                    packed[at] = high ? (byte)((packed[at] & 0x0F) | (nibble << 4)) : (byte)((packed[at] & 0xF0) | nibble);
                }
            }
        }
    }

    /// <summary>The scale of one block (as float32 and as its bf16 bits).</summary>
    private static (float Scale, ushort Bits) BlockScale(QuantFormat format, float* w, long count)
    {
        float amax = 0f, extreme = 0f;
        for (var k = 0; k < count; k++)
        {
            if (!float.IsFinite(w[k])) throw new ArgumentException($"A weight to quantize is not finite ({w[k]}).");
            var a = MathF.Abs(w[k]);
            if (a > amax) (amax, extreme) = (a, w[k]);
        }
        if (amax == 0f) return (0f, 0);
        var bits = RoundUpToBf16(format == QuantFormat.Q8 ? amax / 127f : amax / 8f);
        if (format == QuantFormat.Q4 && extreme > 0) bits |= 0x8000; // the extreme maps to −8
        return (GemvMath.Bf16ToFloat(bits), bits);
    }

    /// <summary>The bf16 bits of the smallest bf16 value at least <paramref name="v"/> (v ≥ 0, finite).</summary>
    private static ushort RoundUpToBf16(float v)
    {
        var bits = GemvMath.FloatToBf16(v);
        return GemvMath.Bf16ToFloat(bits) < v ? (ushort)(bits + 1) : bits;
    }

    /// <summary>Weight <paramref name="k"/> of a packed row as its integer <c>q</c>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int Level(QuantFormat format, byte* packed, long k)
    {
        if (format == QuantFormat.Q8) return packed[Q8Byte(k)] - 128;
        var (at, high) = Q4Byte(k);
        return (high ? packed[at] >> 4 : packed[at] & 0x0F) - 8;
    }

    /// <summary>Dequantizes a packed row into <paramref name="n"/> float32 values (<c>q · scale</c>, exact in float32).</summary>
    public static void DequantizeRow(QuantFormat format, byte* packed, ushort* scales, long n, float* w)
    {
        for (long k = 0; k < n; k++) w[k] = Level(format, packed, k) * GemvMath.Bf16ToFloat(scales[k / BlockWeights]);
    }

    /// <summary>
    /// Dequantizes a packed row straight into bf16 (each value rounded to nearest-even): what prefill's matrix products
    /// read, for every weight of the model at each prefill, so whole blocks go through 512-bit vectors where available
    /// (bit for bit the per-weight rule of the rest).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void DequantizeRow(QuantFormat format, byte* packed, ushort* scales, long n, ushort* w)
    {
        long k = 0;
        if (GemvMath.Lanes == 16)
            for (; k + BlockWeights <= n; k += BlockWeights) DequantizeBlock(format, packed, k, GemvMath.Bf16ToFloat(scales[k / BlockWeights]), w + k);
        for (; k < n; k++) w[k] = GemvMath.FloatToBf16(Level(format, packed, k) * GemvMath.Bf16ToFloat(scales[k / BlockWeights]));
    }

    /// <summary>
    /// The 32 weights of the block starting at weight <paramref name="k"/> as bf16: the block's four-byte groups sit
    /// 64 bytes apart in its superblock (<see cref="QuantLayout"/>), so eight (Q8) or four (Q4) 32-bit reads put its
    /// weights in natural order.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private static void DequantizeBlock(QuantFormat format, byte* packed, long k, float scale, ushort* dst)
    {
        long super = k / SuperWeights, block = k % SuperWeights / BlockWeights;
        Vector512<int> first, second; // weights 0–15 and 16–31 of the block, as integers
        if (format == QuantFormat.Q8)
        {
            var p = packed + super * SuperWeights + 4 * block;
            var bytes = Vector256.Create(*(uint*)p, *(uint*)(p + 64), *(uint*)(p + 128), *(uint*)(p + 192),
                *(uint*)(p + 256), *(uint*)(p + 320), *(uint*)(p + 384), *(uint*)(p + 448)).AsByte();
            first = Avx512F.ConvertToVector512Int32(bytes.GetLower()) - Vector512.Create(128);
            second = Avx512F.ConvertToVector512Int32(bytes.GetUpper()) - Vector512.Create(128);
        }
        else
        {
            var p = packed + super * (SuperWeights / 2) + 4 * block;
            var bytes = Avx512F.ConvertToVector512Int32(Vector128.Create(*(uint*)p, *(uint*)(p + 64), *(uint*)(p + 128), *(uint*)(p + 192)).AsByte());
            first = (bytes & Vector512.Create(0x0F)) - Vector512.Create(8); // low nibbles: groups 0–3
            second = Vector512.ShiftRightLogical(bytes, 4) - Vector512.Create(8); // high nibbles: groups 4–7
        }
        var sc = Vector512.Create(scale);
        GemvMath.StoreBf16(Avx512F.ConvertToVector512Single(first) * sc, dst);
        GemvMath.StoreBf16(Avx512F.ConvertToVector512Single(second) * sc, dst + 16);
    }

    /// <summary>
    /// Quantizes activation row <paramref name="x"/> (<paramref name="n"/> values, bf16 when <paramref name="bf16"/>,
    /// else float32) into <paramref name="a"/>'s row <paramref name="m"/>.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public static void QuantizeActivations(nint x, bool bf16, long n, QuantizedActivations a, int m)
    {
        var padded = PaddedInputs(n);
        var xq = a.Values(m);
        var blocks = padded / BlockWeights;
        float* dx = a.Scales(m);
        int* c8 = a.Offsets8(m), c4 = a.Offsets4(m);
        Span<float> v = stackalloc float[BlockWeights];
        for (long b = 0; b < blocks; b++)
        {
            long first = b * BlockWeights, count = Math.Clamp(n - first, 0, BlockWeights);
            var amax = 0f;
            for (var k = 0; k < BlockWeights; k++)
            {
                v[k] = k < count ? (bf16 ? GemvMath.Bf16ToFloat(((ushort*)x)[first + k]) : ((float*)x)[first + k]) : 0f;
                amax = MathF.Max(amax, MathF.Abs(v[k]));
            }
            var scale = amax / 127f;
            var inverse = amax == 0f ? 0f : 127f / amax;
            var sum = 0;
            for (var k = 0; k < BlockWeights; k++)
            {
                var q = (int)Math.Clamp(MathF.Round(v[k] * inverse), -127f, 127f);
                xq[Q8Byte(first + k)] = (sbyte)q;
                sum += q;
            }
            dx[b] = scale;
            c8[b] = -128 * sum;
            c4[b] = -8 * sum;
        }
    }
}

/// <summary>
/// Quantized activation rows (native memory, grown by need, reused across regions): int8 values in the Q8 weight
/// layout, a float32 scale per block, and per block <c>−128·Σq</c> and <c>−8·Σq</c> (the offsets of Q8 and Q4 weights).
/// </summary>
internal sealed unsafe class QuantizedActivations : IDisposable
{
    private byte* _memory;
    private long _capacity, _padded, _blocks;

    /// <summary>Makes room for <paramref name="rows"/> rows of <paramref name="n"/> inputs (previous contents are lost).</summary>
    public void Ensure(int rows, long n)
    {
        _padded = PaddedInputs(n);
        _blocks = _padded / BlockWeights;
        var bytes = rows * RowStride;
        if (bytes <= _capacity) return;
        System.Runtime.InteropServices.NativeMemory.AlignedFree(_memory);
        _capacity = Math.Max(bytes, 2 * _capacity);
        _memory = (byte*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)_capacity, 64);
    }

    /// <summary>Bytes from one row to the next: the int8 values, then float32 scales, Q8 offsets and Q4 offsets per block.</summary>
    public long RowStride => _padded + 3 * 4 * _blocks;

    /// <summary>The first row.</summary>
    public byte* Start => _memory;

    /// <summary>Row <paramref name="m"/>'s int8 values.</summary>
    public sbyte* Values(int m) => (sbyte*)(_memory + m * RowStride);

    /// <summary>Row <paramref name="m"/>'s block scales.</summary>
    public float* Scales(int m) => (float*)(_memory + m * RowStride + _padded);

    /// <summary>Row <paramref name="m"/>'s Q8 offsets (<c>−128·Σq</c> per block).</summary>
    public int* Offsets8(int m) => (int*)(_memory + m * RowStride + _padded + 4 * _blocks);

    /// <summary>Row <paramref name="m"/>'s Q4 offsets (<c>−8·Σq</c> per block).</summary>
    public int* Offsets4(int m) => (int*)(_memory + m * RowStride + _padded + 8 * _blocks);

    /// <inheritdoc />
    public void Dispose()
    {
        System.Runtime.InteropServices.NativeMemory.AlignedFree(_memory);
        _memory = null;
        _capacity = 0;
    }
}
