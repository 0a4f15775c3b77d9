using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>
/// Writes <c>.safetensors</c> files the way the reference library does: 8-byte little-endian header
/// length, a JSON header with <c>{"__metadata__": {"format": "pt"}}</c> first and the tensors in
/// ordinal key order, padded with spaces to a multiple of 8 bytes (so every tensor of 8 bytes or
/// less per element is aligned for memory mapping), then the data in the same key order. Also writes
/// sharded folders (<c>model-00001-of-0000N.safetensors</c> + <c>model.safetensors.index.json</c>).
/// Tensors are written one at a time, so converting a source never holds more than one tensor.
/// </summary>
internal static class SafetensorsWriter
{
    /// <summary>A tensor to write; <paramref name="Get"/> returns a tensor the writer disposes once written.</summary>
    private sealed record Item(string Key, torch.ScalarType DType, long[] Shape, Func<torch.Tensor> Get)
    {
        public long Bytes => DTypes.NumElements(Shape) * DTypes.ElementSize(DType);
    }

    /// <summary>Writes <paramref name="tensors"/> (any device, any layout; written as contiguous CPU data) to <paramref name="path"/>.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors) =>
        WriteItems(path, tensors.Select(kv => new Item(kv.Key, kv.Value.dtype, kv.Value.shape, kv.Value.alias)));

    /// <summary>
    /// Writes tensors produced one at a time by their <c>Create</c> functions (each disposed right after it
    /// is written), so a file larger than memory can be generated or converted.
    /// </summary>
    public static void Write(string path, IEnumerable<(string Key, torch.ScalarType DType, long[] Shape, Func<torch.Tensor> Create)> tensors) =>
        WriteItems(path, tensors.Select(t => new Item(t.Key, t.DType, t.Shape, t.Create)));

    /// <summary>Copies every tensor of <paramref name="source"/> to <paramref name="path"/>, casting floating tensors to <paramref name="floatDType"/> when given.</summary>
    public static void Write(string path, IWeightSource source, torch.ScalarType? floatDType = null) =>
        WriteItems(path, Items(source, floatDType));

    /// <summary>
    /// Copies <paramref name="source"/> (floating tensors cast to <paramref name="floatDType"/> when given) as
    /// shards of at most <paramref name="maxShardBytes"/> data bytes (a larger single tensor gets its own shard)
    /// plus <c>model.safetensors.index.json</c> in <paramref name="folder"/>; returns the index path.
    /// </summary>
    public static string WriteSharded(string folder, IWeightSource source, long maxShardBytes, torch.ScalarType? floatDType = null,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxShardBytes);
        Directory.CreateDirectory(folder);
        var items = Items(source, floatDType).OrderBy(i => i.Key, StringComparer.Ordinal).ToList();
        var shards = new List<List<Item>> { new() };
        long current = 0;
        foreach (var item in items)
        {
            if (current > 0 && current + item.Bytes > maxShardBytes) { shards.Add([]); current = 0; }
            shards[^1].Add(item);
            current += item.Bytes;
        }
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < shards.Count; i++)
        {
            var name = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            WriteItems(Path.Combine(folder, name), shards[i], metadata);
            foreach (var item in shards[i]) weightMap[item.Key] = name;
        }
        var indexPath = Path.Combine(folder, "model.safetensors.index.json");
        var index = new { metadata = new { total_size = items.Sum(i => i.Bytes) }, weight_map = weightMap };
        File.WriteAllText(indexPath, JsonSerializer.Serialize(index, new JsonSerializerOptions { WriteIndented = true }));
        return indexPath;
    }

    private static IEnumerable<Item> Items(IWeightSource source, torch.ScalarType? floatDType) =>
        source.Keys.Select(k =>
        {
            source.TryGetInfo(k, out var info);
            var dtype = floatDType is { } f && DTypes.IsFloating(info.DType) ? f : info.DType;
            return new Item(k, dtype, info.Shape, () => source.Load(k, dtype));
        });

    private static void WriteItems(string path, IEnumerable<Item> unordered, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var items = unordered.OrderBy(i => i.Key, StringComparer.Ordinal).ToList();
        var meta = new SortedDictionary<string, string>(StringComparer.Ordinal) { ["format"] = "pt" };
        foreach (var (k, v) in metadata ?? new Dictionary<string, string>()) meta[k] = v;
        var header = new OrderedDictionary<string, object> { ["__metadata__"] = meta };
        long offset = 0;
        foreach (var item in items)
        {
            var entry = new { dtype = DTypes.ToSafetensors(item.DType), shape = item.Shape, data_offsets = new[] { offset, offset += item.Bytes } };
            if (!header.TryAdd(item.Key, entry)) throw new ArgumentException($"key '{item.Key}' given twice");
        }
        var json = JsonSerializer.Serialize(header); // ASCII: the default encoder escapes everything else
        json = json.PadRight((json.Length + 7) / 8 * 8);

        var tmp = path + ".tmp";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)json.Length);
            fs.Write(len);
            fs.Write(Encoding.ASCII.GetBytes(json));
            foreach (var item in items)
            {
                using var t = item.Get();
                if (t.dtype != item.DType || !t.shape.SequenceEqual(item.Shape))
                    throw new InvalidOperationException($"tensor '{item.Key}' changed dtype or shape while writing");
                WriteData(fs, t);
            }
        }
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Appends the raw little-endian bytes of <paramref name="t"/> (row-major) to <paramref name="stream"/>.</summary>
    internal static void WriteData(Stream stream, torch.Tensor t)
    {
        var n = t.NumberOfElements;
        if (n == 0) return;
        using var cpu = t.device_type == DeviceType.CPU ? t.alias() : t.cpu();
        using var contiguous = cpu.contiguous();
        using var flat = contiguous.view(-1);
        var perChunk = Math.Max(1, (1L << 30) / contiguous.ElementSize);
        for (long first = 0; first < n; first += perChunk)
        {
            using var part = flat.narrow(0, first, Math.Min(perChunk, n - first));
            stream.Write(part.bytes);
        }
    }
}
