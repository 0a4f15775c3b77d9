namespace MiniGpt4.SyntheticWorld;

/// <summary>
/// The world's random numbers: SplitMix64, written out so that a seed gives the same scenes on every .NET version
/// and platform (System.Random's seeded sequence is an implementation detail).
/// </summary>
public sealed class WorldRandom
{
    private ulong _state;

    /// <summary>A generator seeded with <paramref name="seed"/>.</summary>
    public WorldRandom(ulong seed) => _state = seed;

    /// <summary>The generator of item <paramref name="index"/> of a data set seeded with <paramref name="seed"/>: each item has its own stream, so items can be drawn alone or in parallel.</summary>
    public static WorldRandom ForItem(long seed, long index) =>
        new(Mix(Mix(unchecked((ulong)seed) ^ 0x9E3779B97F4A7C15UL) + unchecked((ulong)index)));

    /// <summary>The next 64 random bits.</summary>
    public ulong NextUInt64()
    {
        _state = unchecked(_state + 0x9E3779B97F4A7C15UL);
        return Mix(_state);
    }

    /// <summary>An integer from <paramref name="min"/> to <paramref name="maxInclusive"/>, both included.</summary>
    public int Next(int min, int maxInclusive)
    {
        if (maxInclusive < min) throw new ArgumentOutOfRangeException(nameof(maxInclusive), $"empty range [{min}, {maxInclusive}]");
        var range = (ulong)((long)maxInclusive - min + 1);
        return (int)(min + (long)(ulong)(((UInt128)NextUInt64() * range) >> 64));
    }

    /// <summary>A number in [0, 1).</summary>
    public double NextDouble() => (NextUInt64() >> 11) * (1.0 / (1UL << 53));

    /// <summary>True with probability one half.</summary>
    public bool NextBool() => (NextUInt64() >> 63) != 0;

    /// <summary>One element of <paramref name="items"/>, uniformly.</summary>
    public T Pick<T>(IReadOnlyList<T> items) => items[Next(0, items.Count - 1)];

    private static ulong Mix(ulong z)
    {
        z = unchecked((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL);
        z = unchecked((z ^ (z >> 27)) * 0x94D049BB133111EBUL);
        return z ^ (z >> 31);
    }
}
