using MiniGpt4.SyntheticWorld;
using Xunit;

namespace MiniGpt4.Tests.World;

/// <summary>The scene code's contract: 32 words, count first, then colour and shape per object left to right, the background at 9, pads elsewhere.</summary>
public class SceneCodeTests
{
    private static SceneObject Obj(ShapeKind shape, ShapeColour colour, int x, int y, int size) => new(shape, colour, Palette.Base(colour), x, y, size);

    [Fact]
    public void A_hand_made_scene_gives_its_words_in_the_contracts_positions()
    {
        // The blue square's left edge (10) is left of the red circle's (20), but its centre (10+60/2=40) is right of
        // the circle's (20+10/2=25): the code orders by centre.
        var scene = new Scene(300, 200, BackgroundKind.Cream, new Rgb(245, 240, 225),
            [Obj(ShapeKind.Square, ShapeColour.Blue, 10, 100, 60), Obj(ShapeKind.Circle, ShapeColour.Red, 20, 10, 10),
             Obj(ShapeKind.Triangle, ShapeColour.Orange, 200, 20, 40)], ImageFileFormat.Png, 0, false);
        string[] expected = ["three", "red", "circle", "blue", "square", "orange", "triangle", "none", "none", "cream",
            .. Enumerable.Repeat("none", 22)];
        Assert.Equal(expected, SceneCode.Words(scene));
        Assert.Equal("A red circle, a blue square and an orange triangle on a cream background.", QuestionGenerator.Caption(scene));
    }

    [Fact]
    public void Ties_in_centre_x_are_broken_by_centre_y()
    {
        var scene = new Scene(200, 200, BackgroundKind.Black, new Rgb(0, 0, 0),
            [Obj(ShapeKind.Square, ShapeColour.Green, 50, 120, 40), Obj(ShapeKind.Circle, ShapeColour.Yellow, 50, 20, 40)],
            ImageFileFormat.Png, 0, false);
        Assert.Equal(["two", "yellow", "circle", "green", "square", "none", "none", "none", "none", "black"], SceneCode.Words(scene).Take(10));
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
            Assert.Equal(Palette.Word(scene.Background), words[9]);
            var colours = Enumerable.Range(0, 4).Select(k => words[1 + 2 * k]).Where(w => w != "none").Order();
            var shapes = Enumerable.Range(0, 4).Select(k => words[2 + 2 * k]).Where(w => w != "none").Order();
            Assert.Equal(scene.Objects.Select(o => Palette.Word(o.Colour)).Order(), colours);
            Assert.Equal(scene.Objects.Select(o => Palette.Word(o.Shape)).Order(), shapes);
            Assert.All(words.Skip(1 + 2 * scene.Objects.Count).Where((_, j) => j + 1 + 2 * scene.Objects.Count != 9), w => Assert.Equal("none", w));
            Assert.Equal(words.Select(SceneCode.IndexOf), SceneCode.Indices(scene));
        }
    }

    [Fact]
    public void The_vocabulary_is_the_18_distinct_words_of_counts_colours_shapes_backgrounds_and_the_pad()
    {
        Assert.Equal(["one", "two", "three", "four", "red", "green", "blue", "yellow", "purple", "orange",
            "circle", "square", "triangle", "white", "grey", "cream", "black", "none"], SceneCode.Vocabulary);
        Assert.Throws<ArgumentException>(() => SceneCode.IndexOf("pink"));
    }
}
