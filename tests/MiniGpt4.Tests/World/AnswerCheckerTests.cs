using MiniGpt4.SyntheticWorld;
using Xunit;

namespace MiniGpt4.Tests.World;

/// <summary>The four acceptance rules on hand-written right and wrong answers.</summary>
public class AnswerCheckerTests
{
    // A scene with a red circle, a blue square and a blue triangle.
    private static readonly AnswerFacts Scene = new(3, [ShapeColour.Red, ShapeColour.Blue], [ShapeKind.Circle, ShapeKind.Square, ShapeKind.Triangle]);

    [Theory]
    [InlineData("There are three shapes.", true)]
    [InlineData("three", true)]
    [InlineData("There are 3 shapes.", true)]
    [InlineData("THREE SHAPES", true)]
    [InlineData("There are three shapes: a red circle, a blue square and a blue triangle.", true)] // colours may be named
    [InlineData("There are two shapes.", false)]
    [InlineData("There are three shapes: one red circle and two blue ones.", false)] // another number
    [InlineData("There are three shapes, not 4.", false)]
    [InlineData("There are several shapes.", false)] // no number
    [InlineData("", false)]
    [InlineData("There are threes.", false)] // whole words only
    public void Count_answers_need_the_right_number_and_no_other_from_one_to_four(string answer, bool correct) =>
        Assert.Equal(correct, AnswerChecker.IsCorrect(QuestionKind.Count, Scene, answer));

    [Theory]
    [InlineData("The circle is red.", true)]
    [InlineData("Red.", true)]
    [InlineData("It is red, on a white background.", true)] // the background's colour is not one of the six
    [InlineData("The circle is blue.", false)]
    [InlineData("The circle is red and the square is blue.", false)] // another colour
    [InlineData("The circle is reddish.", false)]
    [InlineData("The circle is orange-red.", false)]
    public void Colour_answers_need_the_right_colour_and_no_other(string answer, bool correct) =>
        Assert.Equal(correct, AnswerChecker.IsCorrect(QuestionKind.Colour, Scene with { Colour = ShapeColour.Red }, answer));

    [Theory]
    [InlineData("The red object is a circle.", true)]
    [InlineData("A circle", true)]
    [InlineData("Circles.", true)] // plurals count as the shape
    [InlineData("The red object is a square.", false)]
    [InlineData("It is a circle, next to the squares.", false)] // a plural of another shape
    [InlineData("It is a circle and a triangle.", false)]
    [InlineData("It is round.", false)]
    public void Shape_answers_need_the_right_shape_and_no_other(string answer, bool correct) =>
        Assert.Equal(correct, AnswerChecker.IsCorrect(QuestionKind.Shape, Scene with { Shape = ShapeKind.Circle }, answer));

    [Theory]
    [InlineData("A red circle, a blue square and a blue triangle on a white background.", true)]
    [InlineData("A red circle, a blue square and a blue triangle.", true)]
    [InlineData("Blue squares and triangles with a red circle.", true)]
    [InlineData("A red circle, a blue square, a blue triangle and another square.", true)] // absent shapes are not ruled out
    [InlineData("A red circle and a blue square on a white background.", false)] // the triangle is missing
    [InlineData("A circle, a blue square and a blue triangle.", false)] // red is missing
    [InlineData("A red circle, a blue square and a green triangle.", false)] // green is absent
    [InlineData("A red circle, a blue square and a blue triangle, and a yellow glow.", false)]
    public void Descriptions_need_every_colour_and_shape_present_and_no_absent_colour(string answer, bool correct) =>
        Assert.Equal(correct, AnswerChecker.IsCorrect(QuestionKind.Describe, Scene, answer));

    [Fact]
    public void Colour_and_shape_questions_need_their_expected_fact()
    {
        Assert.Throws<ArgumentException>(() => AnswerChecker.IsCorrect(QuestionKind.Colour, Scene, "red"));
        Assert.Throws<ArgumentException>(() => AnswerChecker.IsCorrect(QuestionKind.Shape, Scene, "circle"));
    }
}
