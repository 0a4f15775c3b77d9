namespace MiniGpt4.Generation;

/// <summary>
/// Token-id stop suffixes (MiniGPT-4's <c>StoppingCriteriaSub</c>): checked after each appended
/// token, so the stop tokens are part of the output.
/// </summary>
internal sealed class StopSuffixes
{
    private readonly int[][] _suffixes;

    /// <summary>Takes the suffixes (null or empty: none).</summary>
    public StopSuffixes(IReadOnlyList<int[]>? suffixes) => _suffixes = suffixes?.Select(s => s.ToArray()).ToArray() ?? [];

    /// <summary>True when there is at least one suffix.</summary>
    public bool Any => _suffixes.Length > 0;

    /// <summary>Index of the first suffix that <paramref name="generated"/> ends with, or -1.</summary>
    public int Match(ReadOnlySpan<int> generated)
    {
        for (int i = 0; i < _suffixes.Length; i++)
            if (generated.EndsWith(_suffixes[i])) return i;
        return -1;
    }

    /// <summary>
    /// Beam search: MiniGPT-4's criterion stops when every running row ends with the same suffix
    /// (<c>torch.all(input_ids[:, -len(stop):] == stop)</c> for some stop).
    /// </summary>
    public bool AllEndWithSameSuffix(IReadOnlyList<List<int>> rows)
    {
        foreach (var stop in _suffixes)
        {
            bool all = true;
            foreach (var row in rows)
                if (!System.Runtime.InteropServices.CollectionsMarshal.AsSpan(row).EndsWith(stop)) { all = false; break; }
            if (all) return true;
        }
        return false;
    }
}
