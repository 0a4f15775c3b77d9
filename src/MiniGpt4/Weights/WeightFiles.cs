using System.Text.Json;

namespace MiniGpt4.Weights;

/// <summary>Opens weight files of every layout the released MiniGPT-4 weights come in.</summary>
internal static class WeightFiles
{
    private const long MaxIndexBytes = 64L << 20;

    /// <summary>
    /// Opens <paramref name="path"/>: a <c>.safetensors</c> file, a <c>*.safetensors.index.json</c>, a torch
    /// zip <c>.pth</c>/<c>.bin</c>, a <c>pytorch_model.bin.index.json</c>, or a Hugging Face folder
    /// (<c>model.safetensors[.index.json]</c> preferred, else <c>pytorch_model.bin[.index.json]</c>).
    /// Headers are read and validated now; tensor data is read on demand.
    /// </summary>
    public static IWeightSource Open(string path)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        path = Path.GetFullPath(path);
        if (Directory.Exists(path)) return Open(ResolveFolder(path));
        if (!File.Exists(path)) throw new MiniGptWeightsException($"weight file not found: {path}", path);
        var name = Path.GetFileName(path);
        if (name.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase)) return OpenIndex(path);
        return new MappedWeightSource(path, ReadFile(path));
    }

    /// <summary>The file a Hugging Face folder's weights are in (or its index).</summary>
    internal static string ResolveFolder(string folder)
    {
        string[] candidates = ["model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin"];
        foreach (var c in candidates)
        {
            var p = Path.Combine(folder, c);
            if (File.Exists(p)) return p;
        }
        throw new MiniGptWeightsException($"{folder}: no weights found (looked for {string.Join(", ", candidates)})", folder);
    }

    private static readonly string[] TorchExtensions = [".pth", ".bin", ".pt", ".ckpt"];

    /// <summary>Entries of one file: <c>.safetensors</c> by name, a torch zip by name or content, else safetensors.</summary>
    private static List<(TensorInfo Info, TensorLocation Location)> ReadFile(string path)
    {
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return SafetensorsReader.ReadEntries(path, out _);
        bool zip;
        try { zip = ZipDirectory.LooksLikeZip(path); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new MiniGptWeightsException($"{path}: cannot open: {ex.Message}", path, null, ex);
        }
        return zip || TorchExtensions.Any(e => path.EndsWith(e, StringComparison.OrdinalIgnoreCase))
            ? TorchZipReader.ReadEntries(path)
            : SafetensorsReader.ReadEntries(path, out _);
    }

    private static IWeightSource OpenIndex(string indexPath)
    {
        var folder = Path.GetDirectoryName(indexPath)!;
        var len = new FileInfo(indexPath).Length;
        if (len > MaxIndexBytes) throw new MiniGptWeightsException($"{indexPath}: index is {len} bytes, over the {MaxIndexBytes >> 20} MB cap", indexPath);
        var weightMap = new List<(string Key, string File)>();
        try
        {
            var json = File.ReadAllBytes(indexPath);
            if (!System.Text.Unicode.Utf8.IsValid(json)) throw new MiniGptWeightsException($"{indexPath}: index is not valid UTF-8 JSON", indexPath);
            using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 });
            if (doc.RootElement.ValueKind != JsonValueKind.Object || !doc.RootElement.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new MiniGptWeightsException($"{indexPath}: index has no \"weight_map\" object", indexPath);
            foreach (var p in map.EnumerateObject())
            {
                if (p.Value.ValueKind != JsonValueKind.String)
                    throw new MiniGptWeightsException($"{indexPath}: weight_map entry '{p.Name}' is not a file name", indexPath, p.Name);
                weightMap.Add((p.Name, p.Value.GetString()!));
            }
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException) // InvalidOperation: an escaped lone surrogate
        {
            throw new MiniGptWeightsException($"{indexPath}: index is not valid JSON: {ex.Message}", indexPath, null, ex);
        }

        var shards = new Dictionary<string, Dictionary<string, (TensorInfo, TensorLocation)>>(StringComparer.Ordinal);
        var entries = new List<(TensorInfo, TensorLocation)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, file) in weightMap)
        {
            if (!seen.Add(key)) throw new MiniGptWeightsException($"{indexPath}: key '{key}' appears twice in weight_map", indexPath, key);
            if (!shards.TryGetValue(file, out var shard))
            {
                var shardPath = Path.GetFullPath(Path.Combine(folder, file));
                if (Path.IsPathRooted(file) || Path.GetDirectoryName(shardPath) != Path.GetFullPath(folder))
                    throw new MiniGptWeightsException($"{indexPath}: shard '{file}' is not a file name in the index's folder", indexPath, key);
                if (!File.Exists(shardPath))
                    throw new MiniGptWeightsException($"{indexPath}: shard '{file}' (of tensor '{key}') not found", shardPath, key);
                shard = ReadFile(shardPath).ToDictionary(e => e.Info.Key, e => (e.Info, e.Location), StringComparer.Ordinal);
                shards[file] = shard;
            }
            if (!shard.TryGetValue(key, out var entry))
                throw new MiniGptWeightsException($"{indexPath}: tensor '{key}' is not in its shard '{file}'", Path.Combine(folder, file), key);
            entries.Add(entry);
        }
        var description = $"{indexPath} ({shards.Count} shard{(shards.Count == 1 ? "" : "s")})";
        return new MappedWeightSource(description, entries);
    }
}
