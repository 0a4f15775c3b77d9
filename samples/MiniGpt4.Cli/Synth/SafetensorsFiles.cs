using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace MiniGpt4.Cli.Synth;

/// <summary>
/// Writes a Hugging Face weights folder in safetensors: one <c>model.safetensors</c>, or, past the shard size,
/// <c>model-0000i-of-0000n.safetensors</c> shards plus <c>model.safetensors.index.json</c> (as
/// <c>save_pretrained</c> does). The header is padded with spaces so the data, and with it every tensor of the
/// shapes written here, starts on a 64-byte boundary.
/// </summary>
internal static class SafetensorsFiles
{
    /// <summary>Writes <paramref name="tensors"/> in order, a new shard whenever the next tensor would pass <paramref name="maxShardBytes"/>.</summary>
    public static void WriteFolder(string folder, IReadOnlyList<TensorSpec> tensors, TensorData data, long maxShardBytes)
    {
        var shards = new List<List<TensorSpec>> { new() };
        long current = 0;
        foreach (var t in tensors)
        {
            var bytes = data.Bytes(t);
            if (current > 0 && current + bytes > maxShardBytes) { shards.Add([]); current = 0; }
            shards[^1].Add(t);
            current += bytes;
        }
        if (shards.Count == 1)
        {
            Write(Path.Combine(folder, "model.safetensors"), shards[0], data);
            return;
        }
        var weightMap = new SortedDictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i < shards.Count; i++)
        {
            var name = $"model-{i + 1:D5}-of-{shards.Count:D5}.safetensors";
            Write(Path.Combine(folder, name), shards[i], data);
            foreach (var t in shards[i]) weightMap[t.Key] = name;
        }
        var index = new Dictionary<string, object>
        {
            ["metadata"] = new Dictionary<string, long> { ["total_size"] = tensors.Sum(data.Bytes) },
            ["weight_map"] = weightMap,
        };
        File.WriteAllText(Path.Combine(folder, "model.safetensors.index.json"), JsonSerializer.Serialize(index, new JsonSerializerOptions { WriteIndented = true }));
    }

    /// <summary>Writes one safetensors file (via a temporary name, renamed when complete).</summary>
    public static void Write(string path, IReadOnlyList<TensorSpec> tensors, TensorData data)
    {
        var header = new Dictionary<string, object> { ["__metadata__"] = new Dictionary<string, string> { ["format"] = "pt" } };
        long offset = 0;
        foreach (var t in tensors)
        {
            var end = offset + data.Bytes(t);
            header[t.Key] = new Dictionary<string, object> { ["dtype"] = data.DType.SafetensorsName(), ["shape"] = t.Shape, ["data_offsets"] = new[] { offset, end } };
            offset = end;
        }
        var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(header));
        var padded = (8 + json.Length + 63) / 64 * 64 - 8;
        var head = new byte[8 + padded];
        BinaryPrimitives.WriteUInt64LittleEndian(head, (ulong)padded);
        json.CopyTo(head, 8);
        head.AsSpan(8 + json.Length).Fill((byte)' ');

        var tmp = path + ".tmp";
        try
        {
            using var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16);
            fs.Write(head);
            foreach (var t in tensors) data.Write(fs, t, Path.GetFileName(path));
        }
        catch
        {
            File.Delete(tmp); // no half-written file left behind (cancelled, disk full)
            throw;
        }
        File.Move(tmp, path, overwrite: true);
    }
}
