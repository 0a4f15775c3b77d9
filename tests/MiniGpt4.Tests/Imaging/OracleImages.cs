using MiniGpt4.Tests.Support;

namespace MiniGpt4.Tests.Imaging;

/// <summary>The oracle's five images and where their reference outputs are.</summary>
internal static class OracleImages
{
    public const string A = "a_gradient_shapes_640x480";
    public const string B = "b_tall_100x300";

    /// <summary>All images with a 224 reference (stem, file extension).</summary>
    public static readonly (string Stem, string Ext)[] All =
    [
        (A, "png"), (B, "jpg"), ("c_square_224x224", "png"), ("d_rgba_300x180", "png"), ("e_gray_50x40", "png"),
    ];

    public static string ImagePath(string stem)
        => Fixtures.Require($"oracle/images/{stem}.{All.Single(x => x.Stem == stem).Ext}");

    /// <summary>preprocess/ for 224, preprocess_448/ for 448.</summary>
    public static string Reference(string stem, int size, string kind)
        => Fixtures.Require($"oracle/{(size == 224 ? "preprocess" : "preprocess_448")}/{stem}.{kind}.npy");

    public static (int Max, double Mean, int Differing) CompareBytes(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"lengths differ: {a.Length} vs {b.Length}");
        int max = 0, differing = 0;
        long sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            int d = Math.Abs(a[i] - b[i]);
            if (d != 0) differing++;
            sum += d;
            max = Math.Max(max, d);
        }
        return (max, (double)sum / a.Length, differing);
    }

    public static (double Max, double Mean) CompareFloats(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"lengths differ: {a.Length} vs {b.Length}");
        double max = 0, sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            double d = Math.Abs((double)a[i] - b[i]);
            sum += d;
            max = Math.Max(max, d);
        }
        return (max, sum / a.Length);
    }
}
