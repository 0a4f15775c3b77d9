using System.Runtime.InteropServices;
using MiniGpt4.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Weights;

/// <summary>The loader's own dtype conversions give libtorch's <c>copy_</c> results bit for bit, special values included (any NaN for a NaN).</summary>
public class FloatConversionTests
{
    public static TheoryData<ScalarType, ScalarType> Pairs => new()
    {
        { ScalarType.Float16, ScalarType.BFloat16 },
        { ScalarType.Float16, ScalarType.Float32 },
        { ScalarType.BFloat16, ScalarType.Float32 },
        { ScalarType.Float32, ScalarType.BFloat16 },
    };

    [Theory]
    [MemberData(nameof(Pairs))]
    public void Every_bit_pattern_and_random_values_convert_as_libtorch_does(ScalarType from, ScalarType to)
    {
        using var scope = NewDisposeScope();
        Assert.True(FloatConversion.Handles(from, to));
        var source = Source(from);
        // Odd lengths and offsets: the vector loops' rests and unaligned starts.
        foreach (var (offset, count) in new[] { (0L, source.shape[0]), (3L, source.shape[0] - 10), (1L, 15L), (5L, 1L) })
        {
            var src = source.narrow(0, offset, count).contiguous();
            var expected = zeros(count, to);
            expected.copy_(src);
            var actual = full(count, 7, to);
            Assert.True(FloatConversion.TryConvert(TensorMath.Address(src), from, TensorMath.Address(actual), to, count, threads: 2));
            Assert.Equal(Bits(expected, to), Bits(actual, to));
        }
    }

    [Fact]
    public void Pairs_left_to_libtorch_are_refused()
    {
        Assert.False(FloatConversion.Handles(ScalarType.Float32, ScalarType.Float16));
        Assert.False(FloatConversion.Handles(ScalarType.BFloat16, ScalarType.Float16));
        Assert.False(FloatConversion.TryConvert(0, ScalarType.Float64, 0, ScalarType.Float32, 1, 1));
    }

    /// <summary>16-bit sources: all 65 536 bit patterns (subnormals, infinities, NaNs) and a large random run; float32: edge values, ties and random bits.</summary>
    private static Tensor Source(ScalarType dtype)
    {
        var random = new Random(11);
        if (dtype != ScalarType.Float32)
        {
            var words = new short[65_536 + 300_001];
            for (var i = 0; i < 65_536; i++) words[i] = (short)i;
            for (var i = 65_536; i < words.Length; i++) words[i] = (short)random.Next(0, 65_536);
            return FromBits(MemoryMarshal.AsBytes(words.AsSpan()), words.Length, dtype);
        }
        var bits = new List<int>
        {
            0, int.MinValue, 0x7F800000, unchecked((int)0xFF800000), 0x7FC00000, 0x7F800001, unchecked((int)0xFFFFFFFF), 1, 0x007FFFFF,
            0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001, 0x7F7FFFFF, 0x7F7F8000, // ties to even either way; rounding to infinity
        };
        for (var i = 0; i < 400_003; i++) bits.Add(random.Next(int.MinValue, int.MaxValue));
        var array = bits.ToArray();
        return FromBits(MemoryMarshal.AsBytes(array.AsSpan()), array.Length, ScalarType.Float32);
    }

    private static Tensor FromBits(ReadOnlySpan<byte> bytes, long count, ScalarType dtype)
    {
        var t = empty(count, dtype);
        bytes.CopyTo(t.bytes);
        return t;
    }

    /// <summary>
    /// The bits; a bfloat16 NaN counts as one value (libtorch's vectorised narrowing writes 0xFFFF where its scalar rule,
    /// which ours follows, writes 0x7FC0).
    /// </summary>
    private static short[] Bits(Tensor t, ScalarType dtype)
    {
        var bits = MemoryMarshal.Cast<byte, short>(t.bytes).ToArray();
        if (dtype == ScalarType.BFloat16)
            for (var i = 0; i < bits.Length; i++)
                if ((bits[i] & 0x7F80) == 0x7F80 && (bits[i] & 0x7F) != 0) bits[i] = 0x7FC0;
        return bits;
    }
}
