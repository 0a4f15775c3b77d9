using System.Text.Json.Nodes;

namespace MiniGpt4.Tests.Support;

/// <summary>Access to the oracle's reference.json / reference_ext.json (read in place).</summary>
public static class Oracle
{
    private static readonly Lazy<JsonNode> Ref = new(() => JsonNode.Parse(File.ReadAllText(Fixtures.Require("oracle/tiny/reference.json")))!);
    private static readonly Lazy<JsonNode> Ext = new(() => JsonNode.Parse(File.ReadAllText(Fixtures.Require("oracle/tiny/reference_ext.json")))!);

    /// <summary>reference.json (skips when absent).</summary>
    public static JsonNode Reference { get { Fixtures.Require("oracle/tiny/reference.json"); return Ref.Value; } }

    /// <summary>reference_ext.json (skips when absent).</summary>
    public static JsonNode Extension { get { Fixtures.Require("oracle/tiny/reference_ext.json"); return Ext.Value; } }

    /// <summary>An int array from a JSON array.</summary>
    public static int[] Ints(JsonNode? node) => node!.AsArray().Select(n => n!.GetValue<int>()).ToArray();

    /// <summary>Reads an oracle .npy given its path relative to oracle/.</summary>
    public static NpyArray Array(string relativeToOracle) => Npy.Read(Fixtures.Require(Path.Combine("oracle", relativeToOracle)));

    /// <summary>Max |a-b|.</summary>
    public static double MaxAbsDiff(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        if (a.Length != b.Length) throw new ArgumentException($"length {a.Length} vs {b.Length}");
        double m = 0;
        for (var i = 0; i < a.Length; i++) m = Math.Max(m, Math.Abs((double)a[i] - b[i]));
        return m;
    }
}

/// <summary>Live-tensor accounting for leak tests.</summary>
public static class LiveTensors
{
    /// <summary>
    /// <c>Tensor.TotalCount</c> after running pending finalizers, so that garbage left by earlier tests is
    /// not finalized during the measured span (which would lower the count and hide or fake a leak).
    /// </summary>
    public static long Settled()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return TorchSharp.torch.Tensor.TotalCount;
    }
}
