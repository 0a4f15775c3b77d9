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
    private sealed record Item(string Key, torch.ScalarType DType, long[] Shape, Func<torch.Tensor> Get, bool Dispose);

    /// <summary>Writes <paramref name="tensors"/> (any device, any layout; written as contiguous CPU data) to <paramref name="path"/>.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, IReadOnlyDictionary<string, string>? metadata = null) =>
        WriteItems(path, tensors.Select(kv => new Item(kv.Key, kv.Value.dtype, kv.Value.shape, () => kv.Value, false)).ToList(), metadata);

    /// <summary>
    /// Writes tensors produced one at a time by their <c>Create</c> functions (each disposed right after it
    /// is written), so a file larger than memory can be generated or converted.
    /// </summary>
    public static void Write(string path, IEnumerable<(string Key, torch.ScalarType DType, long[] Shape, Func<torch.Tensor> Create)> tensors) =>
        WriteItems(path, tensors.Select(t => new Item(t.Key, t.DType, t.Shape, t.Create, true)).ToList(), null);

    /// <summary>Copies every tensor of <paramref name="source"/> to <paramref name="path"/>, casting floating tensors to <paramref name="floatDType"/> when given.</summary>
    public static void Write(string path, IWeightSource source, torch.ScalarType? floatDType = null) =>
        WriteItems(path, Items(source, floatDType), null);

    /// <summary>
    /// Writes <paramref name="tensors"/> as shards of at most <paramref name="maxShardBytes"/> data bytes (a
    /// larger single tensor gets its own shard) plus <c>{baseName}.safetensors.index.json</c> in
    /// <paramref name="folder"/>; returns the index path.
    /// </summary>
    public static string WriteSharded(string folder, IEnumerable<KeyValuePair<string, torch.Tensor>> tensors, long maxShardBytes, string baseName = "model") =>
        WriteShardedItems(folder, tensors.Select(kv => new Item(kv.Key, kv.Value.dtype, kv.Value.shape, () => kv.Value, false)).ToList(), maxShardBytes, baseName);

    /// <summary>Sharded copy of <paramref name="source"/> (see the other overload), floating tensors cast to <paramref name="floatDType"/> when given.</summary>
    public static string WriteSharded(string folder, IWeightSource source, long maxShardBytes, torch.ScalarType? floatDType = null, string baseName = "model") =>
        WriteShardedItems(folder, Items(source, floatDType), maxShardBytes, baseName);

    private static List<Item> Items(IWeightSource source, torch.ScalarType? floatDType) =>
        source.Keys.Select(k =>
        {
            source.TryGetInfo(k, out var info);
            var dtype = floatDType is { } f && DTypes.IsFloating(info.DType) ? f : info.DType;
            return new Item(k, dtype, info.Shape, () => source.Load(k, dtype), true);
        }).ToList();

    private static string WriteShardedItems(string folder, List<Item> items, long maxShardBytes, string baseName)
    {
        if (maxShardBytes <= 0) throw new ArgumentOutOfRangeException(nameof(maxShardBytes));
        Directory.CreateDirectory(folder);
        items.Sort((a, b) => string.CompareOrdinal(a.Key, b.Key));
        var shards = new List<List<Item>>();
        long current = 0;
        foreach (var item in items)
        {
            var bytes = Bytes(item);
            if (shards.Count == 0 || (current + bytes > maxShardBytes && current > 0)) { shards.Add(new List<Item>()); current = 0; }
            shards[^1].Add(item);
            current += bytes;
        }
        if (shards.Count == 0) shards.Add(new List<Item>());
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < shards.Count; i++)
        {
            var name = $"{baseName}-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            WriteItems(Path.Combine(folder, name), shards[i], null);
            foreach (var item in shards[i]) weightMap[item.Key] = name;
        }
        var indexPath = Path.Combine(folder, baseName + ".safetensors.index.json");
        using (var fs = new FileStream(indexPath, FileMode.Create, FileAccess.Write))
        using (var w = new Utf8JsonWriter(fs, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteStartObject("metadata");
            w.WriteNumber("total_size", items.Sum(Bytes));
            w.WriteEndObject();
            w.WriteStartObject("weight_map");
            foreach (var (k, v) in weightMap) w.WriteString(k, v);
            w.WriteEndObject();
            w.WriteEndObject();
        }
        return indexPath;
    }

    private static long Bytes(Item item) => DTypes.NumElements(item.Shape) * DTypes.ElementSize(item.DType);

    private static void WriteItems(string path, List<Item> items, IReadOnlyDictionary<string, string>? metadata)
    {
        items = items.OrderBy(i => i.Key, StringComparer.Ordinal).ToList();
        for (var i = 1; i < items.Count; i++)
            if (items[i].Key == items[i - 1].Key) throw new ArgumentException($"key '{items[i].Key}' given twice");
        var header = new MemoryStream();
        using (var w = new Utf8JsonWriter(header))
        {
            w.WriteStartObject();
            w.WriteStartObject("__metadata__");
            w.WriteString("format", "pt");
            if (metadata is not null)
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                    if (k != "format") w.WriteString(k, v);
            w.WriteEndObject();
            long offset = 0;
            foreach (var item in items)
            {
                var bytes = Bytes(item);
                w.WriteStartObject(item.Key);
                w.WriteString("dtype", DTypes.ToSafetensors(item.DType));
                w.WriteStartArray("shape");
                foreach (var d in item.Shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }
            w.WriteEndObject();
        }
        var padded = (header.Length + 7) / 8 * 8;
        while (header.Length < padded) header.WriteByte((byte)' ');

        var tmp = path + ".tmp";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            Span<byte> len = stackalloc byte[8];
            System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
            fs.Write(len);
            header.Position = 0;
            header.CopyTo(fs);
            foreach (var item in items)
            {
                var t = item.Get();
                try
                {
                    if (t.dtype != item.DType || !t.shape.SequenceEqual(item.Shape))
                        throw new InvalidOperationException($"tensor '{item.Key}' changed dtype or shape while writing");
                    WriteData(fs, t);
                }
                finally
                {
                    if (item.Dispose) t.Dispose();
                }
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
