using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace MiniGpt4.Vision;

/// <summary>
/// Resizes an absolute position embedding to another patch grid the way the reference's
/// <c>interpolate_pos_embed</c> does at load time: the class-token row is kept, the grid rows are
/// resized with PyTorch bicubic (A = -0.75, align_corners = false) in float32.
/// </summary>
internal static class PositionEmbedding
{
    /// <summary>The grid side of a <c>[1, 1 + g*g, W]</c> embedding, or -1 when the row count is not 1 + a square.</summary>
    public static int GridOf(long rows)
    {
        var n = rows - 1;
        var g = (long)Math.Round(Math.Sqrt(n));
        return n > 0 && g * g == n ? (int)g : -1;
    }

    /// <summary>
    /// Returns <paramref name="posEmbed"/> <c>[1, 1 + g*g, W]</c> (shape checked by <see cref="VisionConfig.CheckAgainst"/>)
    /// resized to <c>[1, 1 + grid*grid, W]</c>, float32, on the input's device. The caller owns the result.
    /// </summary>
    public static Tensor Interpolate(Tensor posEmbed, int grid)
    {
        using var scope = NewDisposeScope();
        var g = GridOf(posEmbed.shape[1]);
        var width = posEmbed.shape[2];
        var pe = posEmbed.to(ScalarType.Float32);
        var cls = pe.narrow(1, 0, 1);
        var patches = pe.narrow(1, 1, (long)g * g).reshape(1, g, g, width).permute(0, 3, 1, 2);
        var resized = g == grid
            ? patches
            : F.interpolate(patches, [grid, grid], mode: InterpolationMode.Bicubic, align_corners: false);
        var flat = resized.permute(0, 2, 3, 1).flatten(1, 2);
        return cat([cls, flat], 1).contiguous().MoveToOuterDisposeScope();
    }
}
