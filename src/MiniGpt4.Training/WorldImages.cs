using MiniGpt4.Abstractions;
using MiniGpt4.Imaging;
using MiniGpt4.SyntheticWorld;

namespace MiniGpt4.Training;

/// <summary>
/// Pixel values of synthetic-world scenes through the inference preprocessing (<see cref="ImagePreprocessor"/>: decode,
/// Pillow bicubic resize, CLIP normalisation). A JPEG scene is encoded at its quality and decoded, so training sees its
/// artefacts; a PNG scene is handed over as its rendered pixels, which is what decoding the lossless file gives.
/// </summary>
internal static class WorldImages
{
    private static readonly ImageDecodingOptions Decoding = new();

    /// <summary>The <c>[3 * size * size]</c> CHW pixel values the vision tower takes for <paramref name="scene"/>.</summary>
    public static float[] PixelValues(Scene scene, int size)
    {
        ImageInput input;
        if (scene.Format == ImageFileFormat.Png)
            input = ImageInput.FromRgb(scene.Width, scene.Height, SceneRenderer.Render(scene));
        else
        {
            using var encoded = new MemoryStream();
            SceneRenderer.Encode(scene, encoded);
            input = ImageInput.FromBytes(encoded.ToArray());
        }
        return ImagePreprocessor.ToPixelValues(input, size, Decoding);
    }

    /// <summary>
    /// Pixel values, scene-code labels, patch labels (<see cref="SceneTargets.PatchLabels"/>) and object-centre labels
    /// (<see cref="SceneTargets.CentreLabels"/>, both <paramref name="grid"/> squared per scene) of scenes <paramref name="first"/>.. of world <paramref name="seed"/>, made on the thread pool.
    /// </summary>
    public static (float[] Pixels, long[] Labels, long[] Patches, long[] Centres) Batch(long seed, long first, int count, int size, int grid)
    {
        var plane = 3 * size * size;
        var pixels = new float[count * plane];
        var labels = new long[count * SceneCode.Length];
        var patches = new long[count * grid * grid];
        var centres = new long[count * grid * grid];
        Parallel.For(0, count, i =>
        {
            var scene = SceneGenerator.Generate(seed, first + i);
            PixelValues(scene, size).CopyTo(pixels, i * plane);
            SceneTargets.Labels(scene).CopyTo(labels, i * SceneCode.Length);
            SceneTargets.PatchLabels(scene, grid).CopyTo(patches, i * grid * grid);
            SceneTargets.CentreLabels(scene, grid).CopyTo(centres, i * grid * grid);
        });
        return (pixels, labels, patches, centres);
    }
}
