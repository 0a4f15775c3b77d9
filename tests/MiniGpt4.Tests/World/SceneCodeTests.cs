using MiniGpt4.SyntheticWorld;
using Xunit;

namespace MiniGpt4.Tests.World;

/// <summary>The scene code's contract: 32 words, the count first, one slot per colour and shape (1-18), the background at 19, pads elsewhere.</summary>
public class SceneCodeTests
{
    private static SceneObject Obj(ShapeKind shape, ShapeColour colour, int x, int y, int size) => new(shape, colour, Palette.Base(colour), x, y, size);

    [Fact]
    public void A_hand_made_scene_gives_its_words_in_the_contracts_positions()
    {
        var scene = new Scene(300, 200, BackgroundKind.Cream, new Rgb(245, 240, 225),
            [Obj(ShapeKind.Square, ShapeColour.Blue, 10, 100, 40), Obj(ShapeKind.Triangle, ShapeColour.Orange, 200, 20, 40),
             Obj(ShapeKind.Circle, ShapeColour.Red, 20, 10, 40), Obj(ShapeKind.Square, ShapeColour.Blue, 100, 100, 40)], ImageFileFormat.Png, 0, false);
        var expected = Enumerable.Repeat("none", 32).ToArray();
        expected[0] = "four";
        expected[1] = "redcircle";        // red (colour 0) x circle (shape 0)
        expected[1 + 2 * 3 + 1] = "bluesquares"; // blue (colour 2) x square (shape 1), twice
        expected[1 + 5 * 3 + 2] = "orangetriangle"; // orange (colour 5) x triangle (shape 2)
        expected[19] = "cream";
        Assert.Equal(expected, SceneCode.Words(scene));
        Assert.Equal("A red circle, blue squares and an orange triangle on a cream background.", QuestionGenerator.Caption(scene));
    }

    [Fact]
    public void Every_generated_scene_has_32_code_words_that_agree_with_its_facts()
    {
        for (var i = 0; i < 500; i++)
        {
            var scene = SceneGenerator.Generate(seed: 77, index: i);
            var words = SceneCode.Words(scene);
            Assert.Equal(32, words.Count);
            Assert.All(words, w => Assert.Contains(w, SceneCode.Vocabulary));
            Assert.Equal(Palette.NumberWords[scene.Objects.Count], words[0]);
            Assert.Equal(Palette.Word(scene.Background), words[19]);
            foreach (var c in Palette.Colours)
                foreach (var s in Palette.Shapes)
                {
                    var n = scene.Objects.Count(o => o.Colour == c && o.Shape == s);
                    var word = words[1 + (int)c * 3 + (int)s];
                    Assert.Equal(n == 0 ? "none" : n == 1 ? Palette.Word(c) + Palette.Word(s) : Palette.Word(c) + Palette.Plural(s), word);
                }
            Assert.All(words.Skip(20), w => Assert.Equal("none", w));
            Assert.Equal(words.Select(SceneCode.IndexOf), SceneCode.Indices(scene));
        }
    }

    [Fact]
    public void The_vocabulary_is_the_45_distinct_words_of_counts_combinations_backgrounds_and_the_pad()
    {
        var v = SceneCode.Vocabulary;
        Assert.Equal(45, v.Count);
        Assert.Equal(v.Count, v.Distinct().Count());
        Assert.Equal(["one", "two", "three", "four", "redcircle", "redsquare", "redtriangle", "greencircle"], v.Take(8));
        Assert.Equal(["orangetriangle", "redcircles"], v.Skip(21).Take(2));
        Assert.Equal(["orangetriangles", "white", "grey", "cream", "black", "none"], v.TakeLast(6));
        Assert.Throws<ArgumentException>(() => SceneCode.IndexOf("pink"));
    }
}
