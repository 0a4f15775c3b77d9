using MiniGpt4.Text;
using Xunit;

namespace MiniGpt4.Tests.Text;

public sealed class StopStringMatcherTests
{
    private static (string Emitted, bool Stopped) Run(IReadOnlyList<string> stops, IEnumerable<string> deltas)
    {
        var m = new StopStringMatcher(stops);
        var emitted = "";
        foreach (var d in deltas)
        {
            emitted += m.Push(d, out bool stopped);
            if (stopped) return (emitted, true);
        }
        return (emitted + m.Flush(), false);
    }

    [Theory]
    [InlineData("Hello world###Human: more", "Hello world", true)]
    [InlineData("no stop here", "no stop here", false)]
    [InlineData("ends with ##", "ends with ##", false)]
    [InlineData("###", "", true)]
    [InlineData("a#b##c###d", "a#b##c", true)]
    [InlineData("x Assistant: y", "x ", true)]
    public void Cuts_before_the_first_stop_for_every_split_of_the_text(string text, string expected, bool expectStop)
    {
        var stops = new[] { "###", "Assistant:" };
        for (int i = 0; i <= text.Length; i++)
            for (int j = i; j <= text.Length; j++)
            {
                var (emitted, stopped) = Run(stops, new[] { text[..i], text[i..j], text[j..] });
                Assert.Equal(expected, emitted);
                Assert.Equal(expectStop, stopped);
            }
        // One character at a time.
        var perChar = Run(stops, text.Select(c => c.ToString()));
        Assert.Equal((expected, expectStop), perChar);
    }

    [Fact]
    public void Never_emits_a_partial_stop_and_releases_it_when_the_match_fails()
    {
        var m = new StopStringMatcher(new[] { "###" });
        Assert.Equal("abc", m.Push("abc#", out bool s1));
        Assert.False(s1);
        Assert.Equal("", m.Push("#", out bool s2));
        Assert.False(s2);
        Assert.Equal("##x", m.Push("x", out bool s3));
        Assert.False(s3);
        Assert.Equal("", m.Push("#", out _));
        Assert.Equal("#", m.Flush());
    }

    [Fact]
    public void The_leftmost_of_several_stops_wins_and_later_pushes_emit_nothing()
    {
        var m = new StopStringMatcher(new[] { "END", "##" });
        Assert.Equal("a", m.Push("a##bEND", out bool stopped));
        Assert.True(stopped);
        Assert.Equal("", m.Push("more", out bool again));
        Assert.True(again);
        Assert.Equal("", m.Flush());
    }

    [Fact]
    public void No_stops_passes_text_through_and_empty_stops_are_refused()
    {
        var m = new StopStringMatcher(Array.Empty<string>());
        Assert.Equal("abc", m.Push("abc", out bool stopped));
        Assert.False(stopped);
        Assert.Throws<ArgumentException>(() => new StopStringMatcher(new[] { "" }));
        Assert.Throws<ArgumentNullException>(() => new StopStringMatcher(null!));
    }
}
