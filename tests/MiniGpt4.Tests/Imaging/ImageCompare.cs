namespace MiniGpt4.Tests.Imaging;

/// <summary>Element-wise differences of two images' bytes or pixel values: the largest, the mean and (bytes) how many differ.</summary>
internal static class ImageCompare
{
    public static (int Max, double Mean, int Differing) Bytes(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
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

    public static (double Max, double Mean) Floats(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
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
