using MiniGpt4.SyntheticWorld;

namespace MiniGpt4.Training;

/// <summary>
/// What each of the Q-Former's query outputs learns to say about a scene in vision pretraining: query <c>i</c> names
/// word <c>i</c> of the scene code (<see cref="SceneCode"/>), one class per code word.
/// </summary>
internal static class SceneTargets
{
    /// <summary>The classes: <see cref="SceneCode.Vocabulary"/>.</summary>
    public static IReadOnlyList<string> Classes => SceneCode.Vocabulary;

    /// <summary>The class index of each code word of <paramref name="scene"/>.</summary>
    public static long[] Labels(Scene scene) => SceneCode.Indices(scene).Select(i => (long)i).ToArray();
}
