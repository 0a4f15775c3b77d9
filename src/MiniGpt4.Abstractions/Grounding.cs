using System.Text.RegularExpressions;

namespace MiniGpt4;

/// <summary>
/// One box of a MiniGPT-v2 grounding answer, in the pixel coordinates of the image the question was about
/// (x to the right, y down, origin at the top-left corner).
/// </summary>
/// <param name="Phrase">The phrase the box belongs to (<c>&lt;p&gt;phrase&lt;/p&gt;</c> right before it), or null for a bare box
/// (a <c>[refer]</c> answer).</param>
/// <param name="GridLeft">x1 as the model wrote it, on the 0-100 grid.</param>
/// <param name="GridTop">y1 as the model wrote it, on the 0-100 grid.</param>
/// <param name="GridRight">x2 as the model wrote it, on the 0-100 grid.</param>
/// <param name="GridBottom">y2 as the model wrote it, on the 0-100 grid.</param>
/// <param name="Left">x1 in pixels: <c>GridLeft / 100 * imageWidth</c>.</param>
/// <param name="Top">y1 in pixels: <c>GridTop / 100 * imageHeight</c>.</param>
/// <param name="Right">x2 in pixels: <c>GridRight / 100 * imageWidth</c>.</param>
/// <param name="Bottom">y2 in pixels: <c>GridBottom / 100 * imageHeight</c>.</param>
public sealed record MiniGptGroundingBox(string? Phrase, int GridLeft, int GridTop, int GridRight, int GridBottom,
    double Left, double Top, double Right, double Bottom)
{
    /// <summary>Width in pixels.</summary>
    public double Width => Right - Left;

    /// <summary>Height in pixels.</summary>
    public double Height => Bottom - Top;
}

/// <summary>
/// Reads the boxes of MiniGPT-v2's <c>[grounding]</c>, <c>[refer]</c> and <c>[detection]</c> answers.
/// <para>
/// Format (the reference's <c>demo_v2.py</c> and training data): a box is <c>{&lt;x1&gt;&lt;y1&gt;&lt;x2&gt;&lt;y2&gt;}</c>, four
/// integers on a 0-100 grid; a phrase and its boxes are <c>&lt;p&gt;phrase&lt;/p&gt; {&lt;x1&gt;&lt;y1&gt;&lt;x2&gt;&lt;y2&gt;}</c>, several
/// boxes of one phrase separated by <c>&lt;delim&gt;</c>; a <c>[refer]</c> answer is a bare box.
/// </para>
/// <para>
/// Scale: the grid is 100 steps of the image's own width and of its own height, separately (not a padded square):
/// MiniGPT-v2 resizes every image to 448x448 without keeping its aspect ratio, its training boxes were written as
/// <c>int(x / width * 100)</c> and <c>int(y / height * 100)</c>, and the reference's demo and RefCOCO evaluation map
/// them back as <c>x / 100 * width</c>, <c>y / 100 * height</c>. This parser maps them the same way.
/// </para>
/// <para>
/// A phrase owns the first box after it (any text may come between them, as in the demo) and the boxes joined to
/// that one by <c>&lt;delim&gt;</c> or spaces; other boxes have no phrase. Malformed boxes are skipped, never guessed
/// at: not exactly four integers, a value above 100, a sign or a fraction, x2 &lt; x1 or y2 &lt; y1, or a box cut off
/// by the end of the answer. A phrase followed by no valid box gives nothing. Unlike the demo, which draws either
/// the phrases' boxes or one bare box, this returns every well-formed box.
/// </para>
/// </summary>
public static class MiniGptGrounding
{
    /// <summary>The grid the model writes coordinates on: 0 to 100 across the image's width and height.</summary>
    public const int GridSize = 100;

    // A phrase, a {...} group (validated below), or the separator between boxes of one phrase.
    private static readonly Regex Tokens = new(@"<p>(?<phrase>(?:(?!<p>)[^{}])*?)</p>|\{(?<box>[^{}]*)\}|(?<delim><delim>)",
        RegexOptions.Singleline | RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));

    private static readonly Regex Box = new(@"^\s*<\s*(\d{1,3})\s*>\s*<\s*(\d{1,3})\s*>\s*<\s*(\d{1,3})\s*>\s*<\s*(\d{1,3})\s*>\s*$",
        RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));

    /// <summary>
    /// The boxes in <paramref name="answer"/>, in the order written, mapped to pixels of an image of
    /// <paramref name="imageWidth"/> x <paramref name="imageHeight"/> (the image as it was given to the model).
    /// An answer without boxes (any MiniGPT-4 answer, a <c>[vqa]</c> answer) gives an empty list.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="answer"/> is null.</exception>
    /// <exception cref="ArgumentOutOfRangeException">A size is not positive.</exception>
    public static IReadOnlyList<MiniGptGroundingBox> Parse(string answer, int imageWidth, int imageHeight)
    {
        ArgumentNullException.ThrowIfNull(answer);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(imageWidth);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(imageHeight);
        var boxes = new List<MiniGptGroundingBox>();
        string? phrase = null; // the last <p>phrase</p>, while its boxes may still follow
        var bound = false;     // the phrase already has a box (then only <delim> or spaces may come before its next one)
        var lastEnd = 0;       // where the last box ended
        foreach (Match m in Tokens.Matches(answer))
        {
            if (m.Groups["phrase"].Success)
            {
                (phrase, bound) = (m.Groups["phrase"].Value.Trim(), false);
                continue;
            }
            if (m.Groups["delim"].Success) continue;
            if (bound && !OnlySeparators(answer.AsSpan(lastEnd, m.Index - lastEnd))) phrase = null;
            bound = phrase is not null;
            lastEnd = m.Index + m.Length;
            var box = Box.Match(m.Groups["box"].Value);
            if (!box.Success) continue;
            var g = new int[4];
            for (var i = 0; i < 4; i++) g[i] = int.Parse(box.Groups[i + 1].ValueSpan, provider: System.Globalization.CultureInfo.InvariantCulture);
            if (g.Any(v => v > GridSize) || g[2] < g[0] || g[3] < g[1]) continue;
            boxes.Add(new MiniGptGroundingBox(phrase, g[0], g[1], g[2], g[3],
                (double)g[0] / GridSize * imageWidth, (double)g[1] / GridSize * imageHeight,
                (double)g[2] / GridSize * imageWidth, (double)g[3] / GridSize * imageHeight));
        }
        return boxes;
    }

    private static bool OnlySeparators(ReadOnlySpan<char> between)
    {
        while (true)
        {
            between = between.TrimStart();
            if (between.IsEmpty) return true;
            if (!between.StartsWith("<delim>", StringComparison.Ordinal)) return false;
            between = between["<delim>".Length..];
        }
    }
}
