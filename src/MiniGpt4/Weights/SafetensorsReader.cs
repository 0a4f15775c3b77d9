using System.Buffers.Binary;
using System.Text.Json;

namespace MiniGpt4.Weights;

/// <summary>
/// Reads the header of a <c>.safetensors</c> file (8-byte little-endian header length, a JSON object of
/// <c>{key: {dtype, shape, data_offsets}}</c> plus optional <c>__metadata__</c>, then the data) and validates it
/// completely against the file before any tensor is touched: header length within the file and the cap, valid JSON,
/// known dtypes, byte counts equal to shape x element size, offsets inside the data and not overlapping.
/// </summary>
internal static class SafetensorsReader
{
    /// <summary>Largest header accepted (real headers are well under 1 MB even for sharded 13B models).</summary>
    private const long MaxHeaderBytes = 100L << 20;

    /// <summary>Parses and validates <paramref name="path"/>; returns its tensors in header order.</summary>
    public static List<(TensorInfo Info, TensorLocation Location)> ReadEntries(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
        var fileLength = fs.Length;
        if (fileLength < 8) throw Bad(path, $"file is {fileLength} bytes, too short for a safetensors header");
        Span<byte> len = stackalloc byte[8];
        fs.ReadExactly(len);
        var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(len);
        if (headerLength > MaxHeaderBytes)
            throw Bad(path, $"header length {headerLength} exceeds the {MaxHeaderBytes >> 20} MB cap (not a safetensors file?)");
        if ((long)headerLength > fileLength - 8)
            throw Bad(path, $"header length {headerLength} is beyond the end of the {fileLength}-byte file (truncated?)");
        var header = new byte[headerLength];
        fs.ReadExactly(header);
        var dataStart = 8 + header.LongLength;
        var entries = WeightFiles.ReadJson(path, "header", header.AsMemory().TrimEnd((byte)' '), root => Entries(path, root, dataStart, fileLength - dataStart));

        var ranges = entries.Where(e => e.Location.ByteLength > 0).OrderBy(e => e.Location.Offset).ToList();
        for (var i = 1; i < ranges.Count; i++)
        {
            var (prev, next) = (ranges[i - 1], ranges[i]);
            if (next.Location.Offset < prev.Location.Offset + prev.Location.ByteLength)
                throw Bad(path, $"tensors '{prev.Info.Key}' and '{next.Info.Key}' overlap", next.Info.Key);
        }
        return entries;
    }

    private static List<(TensorInfo Info, TensorLocation Location)> Entries(string path, JsonElement root, long dataStart, long dataLength)
    {
        if (root.ValueKind != JsonValueKind.Object) throw Bad(path, "header is not a JSON object");
        var entries = new List<(TensorInfo, TensorLocation)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var prop in root.EnumerateObject())
        {
            var key = prop.Name;
            if (!seen.Add(key)) throw Bad(path, $"key '{key}' appears twice in the header", key);
            if (key == "__metadata__")
            {
                if (prop.Value.ValueKind != JsonValueKind.Object) throw Bad(path, "__metadata__ is not an object", key);
                foreach (var m in prop.Value.EnumerateObject()) // GetString refuses an escaped lone surrogate
                    _ = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString() : throw Bad(path, $"__metadata__ value '{m.Name}' is not a string", key);
                continue;
            }
            var (info, begin, end) = ParseEntry(path, key, prop.Value);
            if (end > dataLength)
                throw Bad(path, $"tensor '{key}' data_offsets [{begin}, {end}] lie outside the {dataLength}-byte data section (truncated file?)", key);
            if (end - begin != info.Bytes)
                throw Bad(path, $"tensor '{key}' has {end - begin} bytes but shape {info.Describe()} needs {info.Bytes}", key);
            entries.Add((info, new TensorLocation(path, dataStart + begin, end - begin)));
        }
        return entries;
    }

    private static (TensorInfo Info, long Begin, long End) ParseEntry(string path, string key, JsonElement e)
    {
        if (e.ValueKind != JsonValueKind.Object) throw Bad(path, $"entry '{key}' is not an object", key);
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String)
            throw Bad(path, $"tensor '{key}' has no dtype", key);
        var code = dt.GetString()!;
        var dtype = DTypes.FromSafetensors(code)
            ?? throw Bad(path, $"tensor '{key}' has dtype '{code}', which is not supported (F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)", key);
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array)
            throw Bad(path, $"tensor '{key}' has no shape", key);
        if (sh.EnumerateArray().Any(d => !IsLong(d, out var v) || v < 0))
            throw Bad(path, $"tensor '{key}' has an invalid shape {sh.GetRawText()}", key);
        var shape = sh.EnumerateArray().Select(d => d.GetInt64()).ToArray();
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Bad(path, $"tensor '{key}' has no data_offsets [begin, end]", key);
        if (!IsLong(off[0], out var begin) || !IsLong(off[1], out var end) || begin < 0 || end < begin)
            throw Bad(path, $"tensor '{key}' has invalid data_offsets {off.GetRawText()}", key);
        var info = new TensorInfo(key, dtype, shape);
        try { _ = info.Bytes; }
        catch (OverflowException) { throw Bad(path, $"tensor '{key}' shape {DTypes.FormatShape(shape)} overflows", key); }
        return (info, begin, end);
    }

    // TryGetInt64 throws InvalidOperationException on a non-number: check the kind first.
    private static bool IsLong(JsonElement e, out long value)
    {
        value = 0;
        return e.ValueKind == JsonValueKind.Number && e.TryGetInt64(out value);
    }

    private static MiniGptWeightsException Bad(string path, string message, string? key = null) =>
        new($"{path}: {message}", path, key);
}
