using System.Text;

namespace MiniGpt4.Text;

/// <summary>
/// Watches streamed text for user stop strings. <see cref="Push"/> returns only text that can no longer
/// be part of a stop string: it holds back the longest tail that is a proper prefix of some stop
/// string. When a stop string is complete, the text before its first (leftmost) occurrence is returned
/// and the matcher is stopped; later calls return nothing. Not thread-safe (one per sequence).
/// </summary>
internal sealed class StopStringMatcher
{
    private readonly string[] _stops;
    private readonly StringBuilder _held = new();
    private bool _stopped;

    /// <summary>Creates a matcher; an empty list never stops.</summary>
    /// <exception cref="ArgumentException">A stop string is null or empty.</exception>
    public StopStringMatcher(IReadOnlyList<string> stops)
    {
        ArgumentNullException.ThrowIfNull(stops);
        if (stops.Any(string.IsNullOrEmpty)) throw new ArgumentException("Stop strings must be non-empty.", nameof(stops));
        _stops = stops.ToArray();
    }

    /// <summary>
    /// Adds decoded text. Returns the text safe to emit now; when <paramref name="stopped"/> is true it is
    /// the text up to (not including) the stop string, and nothing more will be emitted.
    /// </summary>
    public string Push(string delta, out bool stopped)
    {
        ArgumentNullException.ThrowIfNull(delta);
        if (_stopped) { stopped = true; return ""; }
        _held.Append(delta);
        string text = _held.ToString();
        int first = -1;
        foreach (var stop in _stops)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (first < 0 || at < first)) first = at;
        }
        if (first >= 0)
        {
            _stopped = stopped = true;
            _held.Clear();
            return text.Substring(0, first);
        }

        int keep = 0; // longest tail that is a proper prefix of a stop string
        foreach (var stop in _stops)
        {
            for (int len = Math.Min(stop.Length - 1, text.Length); len > keep; len--)
            {
                if (string.CompareOrdinal(text, text.Length - len, stop, 0, len) == 0) { keep = len; break; }
            }
        }
        stopped = false;
        return Take(text.Length - keep);
    }

    /// <summary>At the end of generation: the held-back tail (empty after a stop).</summary>
    public string Flush() => _stopped ? "" : Take(_held.Length);

    private string Take(int count)
    {
        string s = _held.ToString(0, count);
        _held.Remove(0, count);
        return s;
    }
}
