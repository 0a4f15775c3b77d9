using TorchSharp;

namespace MiniGpt4.Runtime;

/// <summary>Reads one byte of every memory page of CPU tensors, so their first use does not pay the mapping cost.</summary>
internal static class PageWarmer
{
    private const int PageBytes = 4096;

    /// <summary>Touches every page of each CPU tensor's storage; returns the bytes covered.</summary>
    public static unsafe long Touch(IEnumerable<torch.Tensor> tensors, CancellationToken ct = default)
    {
        long bytes = 0;
        var seen = new HashSet<nint>();
        foreach (var t in tensors)
        {
            if (t.device_type != DeviceType.CPU || t.NumberOfElements == 0) continue;
            var start = TensorMath.Address(t);
            if (!seen.Add(start)) continue;
            var length = t.NumberOfElements * t.ElementSize;
            byte sink = 0;
            var p = (byte*)start;
            for (long off = 0; off < length; off += PageBytes) sink ^= p[off];
            sink ^= p[length - 1];
            Volatile.Write(ref _sink, sink);
            bytes += length;
            ct.ThrowIfCancellationRequested();
        }
        return bytes;
    }

    private static byte _sink;
}
