using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Grounding;

/// <summary>
/// MiniGPT-v2's box text, in the format of the reference's demo_v2.py and training data
/// (<c>"{{&lt;{}&gt;&lt;{}&gt;&lt;{}&gt;&lt;{}&gt;}}".format(...)</c>, <c>"&lt;p&gt;" + phrase + "&lt;/p&gt; " + bbox</c>, boxes of a phrase joined by
/// <c>&lt;delim&gt;</c>), mapped to pixels as the demo and eval_ref.py do: <c>x / 100 * width</c>, <c>y / 100 * height</c>.
/// </summary>
public sealed class GroundingParserTests
{
    // The demo's own mapping, written out: left = x0 / bounding_box_size * image_width, etc.
    private static (double, double, double, double) Demo(int x0, int y0, int x1, int y1, int w, int h)
        => ((double)x0 / 100 * w, (double)y0 / 100 * h, (double)x1 / 100 * w, (double)y1 / 100 * h);

    private static (double, double, double, double) Pixels(MiniGptGroundingBox b) => (b.Left, b.Top, b.Right, b.Bottom);

    [Theory]
    [InlineData(640, 480)]   // landscape 4:3 (oracle image a)
    [InlineData(100, 300)]   // portrait 1:3 (oracle image b)
    [InlineData(448, 448)]   // square, the model's own input size
    [InlineData(1920, 1080)] // 16:9
    [InlineData(1, 1)]
    public void A_grounded_caption_maps_each_phrase_box_to_the_images_pixels(int w, int h)
    {
        const string answer = "<p>a man</p> {<10><20><30><95>} is riding <p>a bicycle</p> {<5><40><60><100>} on <p>the street</p> {<0><70><100><100>}.";
        var boxes = MiniGptGrounding.Parse(answer, w, h);
        Assert.Equal(["a man", "a bicycle", "the street"], boxes.Select(b => b.Phrase));
        Assert.Equal(Demo(10, 20, 30, 95, w, h), Pixels(boxes[0]));
        Assert.Equal(Demo(5, 40, 60, 100, w, h), Pixels(boxes[1]));
        Assert.Equal(Demo(0, 70, 100, 100, w, h), Pixels(boxes[2]));
        Assert.Equal((10, 20, 30, 95), (boxes[0].GridLeft, boxes[0].GridTop, boxes[0].GridRight, boxes[0].GridBottom));
        // The grid spans the whole image on each axis separately (no padding to a square).
        Assert.Equal((0.0, (double)w, (double)h), (boxes[2].Left, boxes[2].Right, boxes[2].Bottom));
        Assert.Equal(boxes[1].Right - boxes[1].Left, boxes[1].Width);
        Assert.Equal(boxes[1].Bottom - boxes[1].Top, boxes[1].Height);
    }

    [Fact]
    public void Detection_boxes_of_one_phrase_are_joined_by_delim()
    {
        var boxes = MiniGptGrounding.Parse("<p>sofa</p> {<0><45><37><88>}<delim>{<55><40><100><90>}", 500, 375);
        Assert.Equal(2, boxes.Count);
        Assert.All(boxes, b => Assert.Equal("sofa", b.Phrase));
        Assert.Equal(Demo(55, 40, 100, 90, 500, 375), Pixels(boxes[1]));

        // Spaces around <delim> are tolerated, and a later bare box belongs to no phrase.
        boxes = MiniGptGrounding.Parse("<p>car</p> {<1><2><3><4>} <delim> {<5><6><7><8>}. Also {<9><9><20><20>}", 100, 100);
        Assert.Equal(["car", "car", null], boxes.Select(b => b.Phrase));
    }

    [Fact]
    public void A_refer_answer_is_one_bare_box()
    {
        var boxes = MiniGptGrounding.Parse("{<12><30><55><90>}", 2000, 1372);
        var b = Assert.Single(boxes);
        Assert.Null(b.Phrase);
        Assert.Equal(Demo(12, 30, 55, 90, 2000, 1372), Pixels(b));
        // The [identify] example of the demo carries its box in the question; an answer in its style has none.
        Assert.Empty(MiniGptGrounding.Parse("a piece of fried chicken", 640, 480));
    }

    [Fact]
    public void The_response_type_parses_its_own_text()
    {
        var r = new MiniGptResponse
        {
            Text = "<p>dog</p> {<25><50><75><100>}",
            RawText = "<p>dog</p> {<25><50><75><100>}",
            TokenIds = [],
            FinishReason = MiniGptFinishReason.Stop,
            Usage = new MiniGptUsage(1, 1, 0, 0, 1),
            Timings = new MiniGptTimings(0, 0, 0, 0),
            Prompt = "",
            SegmentIds = [],
        };
        var b = Assert.Single(r.GetGroundingBoxes(800, 600));
        Assert.Equal(("dog", 200.0, 300.0, 600.0, 600.0), (b.Phrase, b.Left, b.Top, b.Right, b.Bottom));
    }

    [Theory]
    [InlineData("{<12><30><55>}")]                     // three numbers
    [InlineData("{<12><30><55><90><7>}")]              // five
    [InlineData("{<12><30><55><101>}")]                // off the 0-100 grid
    [InlineData("{<-5><30><55><90>}")]                 // a sign
    [InlineData("{<1.5><30><55><90>}")]                // a fraction
    [InlineData("{<55><30><12><90>}")]                 // x2 < x1
    [InlineData("{<12><90><55><30>}")]                 // y2 < y1
    [InlineData("<p>cat</p> {<12><30><55><9")]         // cut off by the end of the answer (max tokens)
    [InlineData("<p>cat</p>")]                         // a phrase without a box
    [InlineData("{<a><b><c><d>}")]
    [InlineData("{12 30 55 90}")]
    [InlineData("<12><30><55><90>")]                   // no braces
    [InlineData("")]
    public void Malformed_boxes_give_nothing(string answer)
    {
        Assert.Empty(MiniGptGrounding.Parse(answer, 640, 480));
    }

    [Fact]
    public void A_malformed_box_does_not_hide_the_good_ones_around_it()
    {
        var boxes = MiniGptGrounding.Parse("<p>a</p> {<1><2><3>}<delim>{<10><10><20><20>} and <p>b</p> {<30><30><40><40>} then <p>c</p> {<50><50><6", 100, 200);
        Assert.Equal(["a", "b"], boxes.Select(b => b.Phrase));
        Assert.Equal((10.0, 20.0, 20.0, 40.0), Pixels(boxes[0]));
    }

    [Fact]
    public void An_unclosed_phrase_tag_does_not_swallow_the_boxes_after_it()
    {
        var boxes = MiniGptGrounding.Parse("<p>unclosed {<1><2><3><4>} and <p>dog</p> {<5><6><7><8>}", 100, 100);
        Assert.Equal([null, "dog"], boxes.Select(b => b.Phrase));
    }

    [Fact]
    public void Arguments_are_checked()
    {
        Assert.Throws<ArgumentNullException>(() => MiniGptGrounding.Parse(null!, 1, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => MiniGptGrounding.Parse("", 0, 1));
        Assert.Throws<ArgumentOutOfRangeException>(() => MiniGptGrounding.Parse("", 1, -1));
    }

    /// <summary>The tiny random-weight MiniGPT-v2 of the oracle answers gibberish: every answer it gave parses to no box.</summary>
    [SkippableFact]
    public void The_oracles_MiniGPT_v2_answers_parse_to_none()
    {
        var answers = new List<string>();
        foreach (var (_, task) in Oracle.Extension["minigptv2"]!["chat"]!.AsObject())
            foreach (var (_, image) in task!.AsObject())
                foreach (var (_, run) in image!["runs"]!.AsObject())
                {
                    answers.Add(run!["chat_answer_text"]!.GetValue<string>());
                    answers.Add(run["decoded_skip_special"]!.GetValue<string>());
                }
        foreach (var turn in Text.TokenizerFixtures.Objects(Oracle.Extension["multi_turn"]!["minigptv2"]))
            if (turn.Obj["chat_answer_text"] is { } text) answers.Add(text.GetValue<string>());
        Assert.True(answers.Count >= 12, $"only {answers.Count} answers found");
        Assert.All(answers, a => Assert.Empty(MiniGptGrounding.Parse(a, 640, 480)));
    }
}
