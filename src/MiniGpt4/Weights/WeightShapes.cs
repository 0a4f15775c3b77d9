using System.Globalization;

namespace MiniGpt4.Weights;

/// <summary>
/// Checks a configuration against the shapes a weight file declares in its header (no tensor data is read), so that a
/// configuration which does not fit its weights is refused before a module sized by it is allocated: a hostile
/// <c>num_hidden_layers</c> or <c>intermediate_size</c> costs nothing but this check.
/// </summary>
internal static class WeightShapes
{
    /// <summary>
    /// The number of numbered sub-modules under <paramref name="prefix"/> (<c>model.layers.</c>,
    /// <c>blocks.</c>): 1 + the largest N among keys <c>prefix + N + "."</c>; 0 when there are none.
    /// Indices that do not fit an int are ignored (the loader reports such keys as unexpected).
    /// </summary>
    public static int CountIndexed(IEnumerable<string> keys, string prefix)
    {
        var max = -1;
        foreach (var k in keys)
        {
            if (!k.StartsWith(prefix, StringComparison.Ordinal)) continue;
            var end = k.IndexOf('.', prefix.Length);
            if (end >= 0 && int.TryParse(k.AsSpan(prefix.Length, end - prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out var i))
                max = Math.Max(max, i);
        }
        return max + 1;
    }

    /// <summary>
    /// Requires <paramref name="key"/> in <paramref name="source"/> with exactly <paramref name="expected"/>;
    /// otherwise throws <see cref="MiniGptWeightsException"/> naming the file, the key, both shapes and
    /// <paramref name="because"/> (the configuration fields that imply the shape, e.g.
    /// <c>"config.json: vocab_size = 800, hidden_size = 64"</c>).
    /// </summary>
    public static void Expect(IWeightSource source, string key, long[] expected, string because)
    {
        if (!source.TryGetInfo(key, out var info))
            throw new MiniGptWeightsException(
                $"{source.Description}: missing key '{key}': {because} imply a tensor of shape {DTypes.FormatShape(expected)}, the file has no such tensor.",
                source.Description, key);
        if (!info.Shape.AsSpan().SequenceEqual(expected))
            throw new MiniGptWeightsException(
                $"{source.Description}: shape mismatch for '{key}': {because} imply {DTypes.FormatShape(expected)}, the file has {info.Describe()}.",
                source.Description, key);
    }

    public static long[]? ShapeOf(IWeightSource source, string key) => source.TryGetInfo(key, out var info) ? info.Shape : null;
}
