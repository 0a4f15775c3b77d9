using System.Buffers.Binary;
using System.Text.Json;
using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>
/// Reads the header of a <c>.safetensors</c> file (8-byte little-endian header length, a JSON object
/// of <c>{key: {dtype, shape, data_offsets}}</c> plus optional <c>__metadata__</c>, then the data) and
/// validates it completely against the file before any tensor is touched: header length within the
/// file and the cap, valid JSON, known dtypes, byte counts equal to shape x element size, offsets
/// inside the data and not overlapping.
/// </summary>
internal static class SafetensorsReader
{
    /// <summary>Largest header accepted (real headers are well under 1 MB even for sharded 13B models).</summary>
    internal const long MaxHeaderBytes = 100L << 20;

    /// <summary>Parses and validates <paramref name="path"/>; returns its tensors in header order.</summary>
    public static List<(TensorInfo Info, TensorLocation Location)> ReadEntries(string path, out IReadOnlyDictionary<string, string> metadata)
    {
        long fileLength;
        byte[] header;
        try
        {
            using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.None);
            fileLength = fs.Length;
            if (fileLength < 8) throw Bad(path, $"file is {fileLength} bytes, too short for a safetensors header");
            Span<byte> len = stackalloc byte[8];
            fs.ReadExactly(len);
            var headerLength = BinaryPrimitives.ReadUInt64LittleEndian(len);
            if (headerLength > (ulong)MaxHeaderBytes)
                throw Bad(path, $"header length {headerLength} exceeds the {MaxHeaderBytes >> 20} MB cap (not a safetensors file?)");
            if ((long)headerLength > fileLength - 8)
                throw Bad(path, $"header length {headerLength} is beyond the end of the {fileLength}-byte file (truncated?)");
            header = new byte[headerLength];
            fs.ReadExactly(header);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new MiniGptWeightsException($"{path}: cannot read: {ex.Message}", path, null, ex);
        }

        var dataStart = 8 + header.LongLength;
        var dataLength = fileLength - dataStart;
        var entries = new List<(TensorInfo, TensorLocation)>();
        var ranges = new List<(long Begin, long End, string Key)>();
        var meta = new Dictionary<string, string>(StringComparer.Ordinal);
        if (!System.Text.Unicode.Utf8.IsValid(header)) throw Bad(path, "header is not valid UTF-8 JSON");
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(header.AsMemory().TrimEnd((byte)' '), new JsonDocumentOptions { MaxDepth = 8 });
        }
        catch (JsonException ex)
        {
            throw new MiniGptWeightsException($"{path}: header is not valid JSON: {ex.Message}", path, null, ex);
        }
        using (doc)
        try
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad(path, "header is not a JSON object");
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                var key = prop.Name;
                if (!seen.Add(key)) throw Bad(path, $"key '{key}' appears twice in the header", key);
                if (key == "__metadata__")
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw Bad(path, "__metadata__ is not an object", key);
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw Bad(path, $"__metadata__ value '{m.Name}' is not a string", key);
                        meta[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                var (info, begin, end) = ParseEntry(path, key, prop.Value);
                if (end > dataLength)
                    throw Bad(path, $"tensor '{key}' data_offsets [{begin}, {end}] lie outside the {dataLength}-byte data section (truncated file?)", key);
                var expected = info.Bytes;
                if (end - begin != expected)
                    throw Bad(path, $"tensor '{key}' has {end - begin} bytes but shape {DTypes.FormatShape(info.Shape)} {info.DType} needs {expected}", key);
                entries.Add((info, new TensorLocation(path, dataStart + begin, end - begin)));
                ranges.Add((begin, end, key));
            }
        }
        catch (InvalidOperationException ex) // a key or string with an escaped lone surrogate ("\ud800")
        {
            throw new MiniGptWeightsException($"{path}: header holds an invalid JSON string: {ex.Message}", path, null, ex);
        }
        ranges.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        for (var i = 1; i < ranges.Count; i++)
        {
            var (prevBegin, prevEnd, prevKey) = ranges[i - 1];
            var (begin, end, key) = ranges[i];
            if (begin < prevEnd && end > begin && prevEnd > prevBegin)
                throw Bad(path, $"tensors '{prevKey}' [{prevBegin}, {prevEnd}] and '{key}' [{begin}, {end}] overlap", key);
        }
        metadata = meta;
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
        var shape = new List<long>();
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out var v) || v < 0)
                throw Bad(path, $"tensor '{key}' has an invalid shape {sh.GetRawText()}", key);
            shape.Add(v);
        }
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array || off.GetArrayLength() != 2)
            throw Bad(path, $"tensor '{key}' has no data_offsets [begin, end]", key);
        // TryGetInt64 throws InvalidOperationException on a non-number: check the kind first.
        if (off[0].ValueKind != JsonValueKind.Number || off[1].ValueKind != JsonValueKind.Number
            || !off[0].TryGetInt64(out var begin) || !off[1].TryGetInt64(out var end) || begin < 0 || end < begin)
            throw Bad(path, $"tensor '{key}' has invalid data_offsets {off.GetRawText()}", key);
        long[] shapeArr = shape.ToArray();
        try { checked { _ = DTypes.NumElements(shapeArr) * DTypes.ElementSize(dtype); } }
        catch (OverflowException) { throw Bad(path, $"tensor '{key}' shape {DTypes.FormatShape(shapeArr)} overflows", key); }
        return (new TensorInfo(key, dtype, shapeArr), begin, end);
    }

    private static MiniGptWeightsException Bad(string path, string message, string? key = null) =>
        new($"{path}: {message}", path, key);
}
