namespace MiniGpt4.Prompting;

/// <summary>The reference's <c>Chat.answer</c> clean-up of a decoded answer.</summary>
internal static class AnswerPostProcessor
{
    /// <summary>The template separator an answer is cut at (<c>Chat.answer</c>'s <c>split('###')[0]</c>).</summary>
    public const string Separator = "###";

    /// <summary>
    /// Cuts at the first <c>###</c>, keeps what follows the last <c>Assistant:</c>, and strips
    /// whitespace with Python's <c>str.strip()</c> set.
    /// </summary>
    public static string Process(string decoded)
    {
        var text = decoded;
        var cut = text.IndexOf(Separator, StringComparison.Ordinal);
        if (cut >= 0) text = text[..cut];
        var role = text.LastIndexOf("Assistant:", StringComparison.Ordinal);
        if (role >= 0) text = text[(role + "Assistant:".Length)..];
        return PyStrip(text);
    }

    /// <summary>Python 3 <c>str.strip()</c> with no argument: removes chars where <c>str.isspace()</c> holds.</summary>
    public static string PyStrip(string s)
    {
        int start = 0, end = s.Length;
        while (start < end && IsPySpace(s[start])) start++;
        while (end > start && IsPySpace(s[end - 1])) end--;
        return s[start..end];
    }

    /// <summary>
    /// Python's <c>str.isspace</c> for one UTF-16 unit: Unicode White_Space plus the ASCII
    /// separators U+001C..U+001F (which Python counts as whitespace and .NET does not).
    /// </summary>
    internal static bool IsPySpace(char c) => c switch
    {
        '\u001c' or '\u001d' or '\u001e' or '\u001f' => true,
        '\u200b' => false, // zero-width space is not whitespace in either
        _ => char.IsWhiteSpace(c),
    };
}
