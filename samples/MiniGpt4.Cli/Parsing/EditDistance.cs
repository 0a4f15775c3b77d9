namespace MiniGpt4.Cli.Parsing;

/// <summary>Optimal string alignment distance: insertions, deletions, substitutions and adjacent swaps cost 1.</summary>
internal static class EditDistance
{
    public static int Between(string a, string b)
    {
        var d = new int[a.Length + 1, b.Length + 1];
        for (var i = 0; i <= a.Length; i++) d[i, 0] = i;
        for (var j = 0; j <= b.Length; j++) d[0, j] = j;
        for (var i = 1; i <= a.Length; i++)
        for (var j = 1; j <= b.Length; j++)
        {
            var cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
        }
        return d[a.Length, b.Length];
    }

    /// <summary>
    /// The candidates nearest to <paramref name="word"/> (case-insensitive, leading dashes ignored): those at the
    /// smallest distance within a third of the word's length (at least 1, at most 3), else those the word begins.
    /// </summary>
    public static IReadOnlyList<string> Nearest(string word, IEnumerable<string> candidates)
    {
        static string Bare(string s) => s.TrimStart('-').ToLowerInvariant();
        var w = Bare(word);
        if (w.Length == 0) return [];
        var list = candidates.Distinct().ToList();
        var limit = Math.Clamp(w.Length / 3, 1, 3);
        var scored = list.Select(c => (c, d: Between(w, Bare(c)))).Where(x => x.d <= limit).ToList();
        if (scored.Count > 0)
        {
            var best = scored.Min(x => x.d);
            return scored.Where(x => x.d == best).Select(x => x.c).ToList();
        }
        return w.Length >= 3 ? list.Where(c => Bare(c).StartsWith(w, StringComparison.Ordinal)).ToList() : [];
    }
}
