using MiniGpt4.SyntheticWorld;

namespace MiniGpt4.Training;

/// <summary>
/// What the vision pretraining teaches: each of the Q-Former's query outputs names word <c>i</c> of the scene code
/// (<see cref="SceneCode"/>), one class per code word; each of the tower's patch tokens names what lies under it.
/// </summary>
internal static class SceneTargets
{
    /// <summary>The classes: <see cref="SceneCode.Vocabulary"/>.</summary>
    public static IReadOnlyList<string> Classes => SceneCode.Vocabulary;

    /// <summary>The class index of each code word of <paramref name="scene"/>.</summary>
    public static long[] Labels(Scene scene) => SceneCode.Indices(scene).Select(i => (long)i).ToArray();

    /// <summary>Patch classes: one per colour-and-shape combination (<see cref="SceneCode.Combos"/> order), then background.</summary>
    public static int PatchClasses => SceneCode.ComboCount + 1;

    /// <summary>
    /// The class of each patch of a <paramref name="grid"/> x <paramref name="grid"/> tiling of the square model input
    /// (row by row): the combination of the object under the patch's centre, or background. The input is the scene
    /// resized to a square, so the centre maps back to the scene's own coordinates along each axis.
    /// </summary>
    public static long[] PatchLabels(Scene scene, int grid)
    {
        var labels = new long[grid * grid];
        for (var r = 0; r < grid; r++)
        for (var c = 0; c < grid; c++)
        {
            double x = (c + 0.5) * scene.Width / grid, y = (r + 0.5) * scene.Height / grid;
            var under = scene.Objects.FirstOrDefault(o => SceneRenderer.Inside(o, x, y));
            labels[r * grid + c] = under is null ? SceneCode.ComboCount : SceneCode.ComboPosition(under.Colour, under.Shape) - 1;
        }
        return labels;
    }

    /// <summary>
    /// 1 for each patch of the <paramref name="grid"/> x <paramref name="grid"/> tiling that holds an object's centre,
    /// else 0 (two objects at least 6 px apart may share one only in a tiny input; the patch then counts once). One
    /// marked patch per object makes the count a sum over patches, which attention pooling can read.
    /// </summary>
    public static long[] CentreLabels(Scene scene, int grid)
    {
        var labels = new long[grid * grid];
        foreach (var o in scene.Objects)
        {
            var c = Math.Min(grid - 1, (int)((o.X + o.Size / 2.0) * grid / scene.Width));
            var r = Math.Min(grid - 1, (int)((o.Y + o.Size / 2.0) * grid / scene.Height));
            labels[r * grid + c] = 1;
        }
        return labels;
    }
}
