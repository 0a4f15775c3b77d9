using System.Runtime.InteropServices;
using System.Text;

namespace MiniGpt4.Cli.Synth;

/// <summary>
/// Deterministic random tensor data, made without a tensor library: every tensor's values depend only on the
/// seed, its key and the element index (blocks of <see cref="BlockElements"/> elements each get their own
/// generator), so a file is the same byte for byte whatever the buffer size or thread count. Values come from
/// a table of 65 536 normal samples indexed by 16 random bits, which is fast enough that the disk, not the
/// generator, sets the pace.
/// </summary>
internal sealed class RandomWeights
{
    public const int BlockElements = 4096;
    private readonly ulong _seed;
    private readonly SynthDType _dtype;
    private readonly Dictionary<Init, Array> _tables = new();

    public RandomWeights(ulong seed, SynthDType dtype)
    {
        _seed = seed;
        _dtype = dtype;
        _tables[Init.Weight] = Table(0, 0.02);
        _tables[Init.Norm] = Table(1, 0.1);
    }

    public SynthDType DType => _dtype;

    /// <summary>Fills <paramref name="dest"/> with elements <c>[first, first + dest.Length / size)</c> of <paramref name="spec"/>; <paramref name="first"/> is a multiple of <see cref="BlockElements"/>.</summary>
    public void Fill(TensorSpec spec, long first, Span<byte> dest)
    {
        var size = _dtype.Size();
        var count = dest.Length / size;
        var tensorSeed = SplitMix(_seed ^ Fnv1a(spec.Key));
        var table = _tables[spec.Init];
        var blocks = (count + BlockElements - 1) / BlockElements;
        var firstBlock = first / BlockElements;
        unsafe
        {
            fixed (byte* p = dest)
            {
                var ptr = (nint)p;
                Parallel.For(0, blocks, new ParallelOptions { MaxDegreeOfParallelism = Environment.ProcessorCount }, b =>
                {
                    var n = (int)Math.Min(BlockElements, count - (long)b * BlockElements);
                    var block = new Span<byte>((byte*)ptr + (long)b * BlockElements * size, n * size);
                    FillBlock(table, SplitMix(tensorSeed + (ulong)(firstBlock + b) * 0x9E3779B97F4A7C15UL), block);
                });
            }
        }
    }

    private void FillBlock(Array table, ulong seed, Span<byte> block)
    {
        var rng = new Xoshiro(seed);
        if (_dtype == SynthDType.Float32)
        {
            var t = (uint[])table;
            var d = MemoryMarshal.Cast<byte, uint>(block);
            for (var i = 0; i < d.Length; i += 4)
            {
                var r = rng.Next();
                for (var k = 0; k < 4 && i + k < d.Length; k++) d[i + k] = t[(int)((r >> (16 * k)) & 0xFFFF)];
            }
        }
        else
        {
            var t = (ushort[])table;
            var d = MemoryMarshal.Cast<byte, ushort>(block);
            var i = 0;
            for (; i + 4 <= d.Length; i += 4)
            {
                var r = rng.Next();
                d[i] = t[(int)(r & 0xFFFF)];
                d[i + 1] = t[(int)((r >> 16) & 0xFFFF)];
                d[i + 2] = t[(int)((r >> 32) & 0xFFFF)];
                d[i + 3] = t[(int)(r >> 48)];
            }
            for (var r = rng.Next(); i < d.Length; i++, r >>= 16) d[i] = t[(int)(r & 0xFFFF)];
        }
    }

    /// <summary>65 536 samples of N(mean, std) (Box-Muller from a fixed generator) in the file's element type.</summary>
    private Array Table(double mean, double std)
    {
        var rng = new Xoshiro(0x5EED_7AB1E + (ulong)(mean * 1000));
        var values = new double[65536];
        for (var i = 0; i < values.Length; i += 2)
        {
            double u1 = ((rng.Next() >> 11) + 1) * (1.0 / (1UL << 53)), u2 = (rng.Next() >> 11) * (1.0 / (1UL << 53));
            var radius = Math.Sqrt(-2 * Math.Log(u1));
            values[i] = mean + std * radius * Math.Cos(2 * Math.PI * u2);
            values[i + 1] = mean + std * radius * Math.Sin(2 * Math.PI * u2);
        }
        return _dtype switch
        {
            SynthDType.Float32 => values.Select(v => BitConverter.SingleToUInt32Bits((float)v)).ToArray(),
            SynthDType.Float16 => values.Select(v => BitConverter.HalfToUInt16Bits((Half)v)).ToArray(),
            _ => values.Select(v => ToBFloat16((float)v)).ToArray(),
        };
    }

    /// <summary>float32 to bfloat16 with round-to-nearest-even (the values are finite).</summary>
    internal static ushort ToBFloat16(float f)
    {
        var bits = BitConverter.SingleToUInt32Bits(f);
        return (ushort)((bits + 0x7FFFu + ((bits >> 16) & 1)) >> 16);
    }

    private static ulong Fnv1a(string s)
    {
        var h = 14695981039346656037UL;
        foreach (var b in Encoding.UTF8.GetBytes(s)) h = (h ^ b) * 1099511628211UL;
        return h;
    }

    private static ulong SplitMix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }

    /// <summary>xoshiro256** seeded through SplitMix64.</summary>
    private struct Xoshiro
    {
        private ulong _s0, _s1, _s2, _s3;

        public Xoshiro(ulong seed)
        {
            _s0 = SplitMix(seed);
            _s1 = SplitMix(_s0);
            _s2 = SplitMix(_s1);
            _s3 = SplitMix(_s2);
        }

        public ulong Next()
        {
            var result = ulong.RotateLeft(_s1 * 5, 7) * 9;
            var t = _s1 << 17;
            _s2 ^= _s0;
            _s3 ^= _s1;
            _s1 ^= _s2;
            _s0 ^= _s3;
            _s2 ^= t;
            _s3 = ulong.RotateLeft(_s3, 45);
            return result;
        }
    }
}
