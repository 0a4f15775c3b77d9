using MiniGpt4.Text;

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
        return PythonWhitespace.Strip(text);
    }
}
