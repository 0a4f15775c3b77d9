namespace MiniGpt4.Text;

/// <summary>Python 3's <c>str.strip</c>, <c>lstrip</c> and <c>rstrip</c> without an argument, as the reference applies them.</summary>
internal static class PythonWhitespace
{
    /// <summary>
    /// Python's <c>str.isspace</c> for one UTF-16 unit: .NET's white space plus the ASCII separators
    /// U+001C..U+001F, which Python counts as whitespace and .NET does not.
    /// </summary>
    public static bool IsSpace(char c) => char.IsWhiteSpace(c) || c is >= '\u001C' and <= '\u001F';

    public static string Strip(string s, bool start = true, bool end = true)
    {
        int a = 0, b = s.Length;
        while (start && a < b && IsSpace(s[a])) a++;
        while (end && b > a && IsSpace(s[b - 1])) b--;
        return s[a..b];
    }
}
