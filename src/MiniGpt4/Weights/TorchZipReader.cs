using System.Text;

namespace MiniGpt4.Weights;

/// <summary>
/// Reads a PyTorch zip checkpoint (<c>torch.save</c>, torch &gt;= 1.6: <c>.pth</c>/<c>.bin</c>):
/// unpickles <c>&lt;stem&gt;/data.pkl</c> with <see cref="PickleReader"/> and locates every tensor
/// in the stored records <c>&lt;stem&gt;/data/&lt;key&gt;</c>. The state dict is the root dict, or the
/// dict under "model" / "state_dict" (LAVIS, MiniGPT-4 checkpoints); entries that are not tensors
/// (optimizer, config, scaler, epoch, nested dicts) are skipped.
/// </summary>
internal static class TorchZipReader
{
    private const long MaxPickleBytes = 64L << 20; // real data.pkl files are KBs (a few MB with optimizer state)

    /// <summary>Parses and validates the zip archive <paramref name="path"/>; returns its tensors in pickle order.</summary>
    public static List<(TensorInfo Info, TensorLocation Location)> ReadEntries(string path)
    {
        var records = ZipDirectory.Read(path);
        var pkl = records.Values.Where(r => r.Name.EndsWith("data.pkl", StringComparison.Ordinal))
            .OrderBy(r => r.Name.Length).FirstOrDefault()
            ?? throw new MiniGptWeightsException($"{path}: zip archive has no data.pkl record (not a torch checkpoint)", path);
        var prefix = pkl.Name[..^"data.pkl".Length];
        if (records.TryGetValue(prefix + "byteorder", out var bo))
        {
            var order = Encoding.ASCII.GetString(ZipDirectory.ReadSmall(path, bo, 64)).Trim();
            if (order != "little") throw new MiniGptWeightsException($"{path}: byte order '{order}' is not supported (little-endian only)", path);
        }
        var root = PickleReader.Load(ZipDirectory.ReadSmall(path, pkl, MaxPickleBytes), path);
        var dict = StateDict(root) ?? throw new MiniGptWeightsException(
            $"{path}: the checkpoint holds no state dict (expected a dict of tensors, or one under 'model' or 'state_dict')", path);

        var entries = new List<(TensorInfo, TensorLocation)>();
        foreach (var (k, v) in dict)
        {
            if (v is not TensorRef t) continue; // optimizer, config, epoch, _metadata ...: not weights
            if (k is not string key) throw new MiniGptWeightsException($"{path}: a tensor has a non-string key {PickleReader.Describe(k)}", path);
            entries.Add(Locate(path, prefix + "data/" + t.Storage.Key, records, key, t));
        }
        return entries;
    }

    private static PyDict? StateDict(object? root)
    {
        if (root is not PyDict d) return null;
        foreach (var name in new[] { "model", "state_dict" })
            if (d.GetValueOrDefault(name) is PyDict inner && inner.Values.Any(v => v is TensorRef)) return inner;
        return d;
    }

    private static (TensorInfo, TensorLocation) Locate(string path, string recordName, Dictionary<string, ZipRecord> records, string key, TensorRef t)
    {
        MiniGptWeightsException Bad(string message) => new($"{path}: tensor '{key}' {message}", path, key);
        var s = t.Storage;
        if (!records.TryGetValue(recordName, out var r)) throw Bad($"refers to record '{recordName}', which is missing from the archive");
        if (r.Method != 0) throw Bad($"is in compressed record '{recordName}'; torch writes storages uncompressed (re-save the file with torch.save)");
        if (t.StorageOffset < 0 || t.Strides.Any(x => x < 0)) throw Bad("has a negative storage offset or stride");
        var elem = DTypes.ElementSize(s.DType);
        long storageBytes, numel, extent = 1; // extent in elements: last element index + 1
        try
        {
            storageBytes = checked(s.NumElements * elem);
            numel = DTypes.NumElements(t.Shape);
            for (var i = 0; i < t.Shape.Length && numel > 0; i++) extent = checked(extent + (t.Shape[i] - 1) * t.Strides[i]);
        }
        catch (OverflowException)
        {
            throw Bad($"overflows (storage of {s.NumElements} {s.DType}, shape {DTypes.FormatShape(t.Shape)}, stride {DTypes.FormatShape(t.Strides)})");
        }
        if (storageBytes > r.Size) throw Bad($"has a storage of {s.NumElements} {s.DType}, which needs {storageBytes} bytes; record '{recordName}' has {r.Size}");
        var info = new TensorInfo(key, s.DType, t.Shape);
        if (numel == 0) return (info, new TensorLocation(path, r.DataOffset, 0));
        if (t.StorageOffset > s.NumElements || extent > s.NumElements - t.StorageOffset)
            throw Bad($"(offset {t.StorageOffset}, shape {DTypes.FormatShape(t.Shape)}, stride {DTypes.FormatShape(t.Strides)}) reaches beyond its storage of {s.NumElements} elements");
        var offset = r.DataOffset + t.StorageOffset * elem;
        return IsContiguous(t.Shape, t.Strides)
            ? (info, new TensorLocation(path, offset, numel * elem))
            : (info, new TensorLocation(path, offset, extent * elem, t.Strides));
    }

    private static bool IsContiguous(long[] shape, long[] strides)
    {
        long expected = 1;
        for (var i = shape.Length - 1; i >= 0; i--)
        {
            if (shape[i] == 1) continue;
            if (strides[i] != expected) return false;
            expected *= shape[i];
        }
        return true;
    }
}
