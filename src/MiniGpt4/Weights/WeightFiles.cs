using System.Text.Json;
using System.Text.Unicode;

namespace MiniGpt4.Weights;

/// <summary>Opens weight files of every layout the released MiniGPT-4 weights come in.</summary>
internal static class WeightFiles
{
    private const long MaxIndexBytes = 64L << 20;
    private static readonly string[] TorchExtensions = [".pth", ".bin", ".pt", ".ckpt"];

    /// <summary>
    /// Opens <paramref name="path"/>: a <c>.safetensors</c> file, a <c>*.safetensors.index.json</c>, a torch
    /// zip <c>.pth</c>/<c>.bin</c>, a <c>pytorch_model.bin.index.json</c>, or a Hugging Face folder
    /// (<c>model.safetensors[.index.json]</c> preferred, else <c>pytorch_model.bin[.index.json]</c>).
    /// Headers are read and validated now; tensor data is read on demand.
    /// </summary>
    public static IWeightSource Open(string path, bool shareFileMemory = false)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        path = Path.GetFullPath(path);
        if (Directory.Exists(path)) path = ResolveFolder(path);
        if (!File.Exists(path)) throw new MiniGptWeightsException($"weight file not found: {path}", path);
        var source = path.EndsWith(".index.json", StringComparison.OrdinalIgnoreCase) ? OpenIndex(path) : new MappedWeightSource(path, ReadFile(path));
        source.ShareFileMemory = shareFileMemory;
        return source;
    }

    /// <summary>
    /// Runs <paramref name="read"/> over the JSON <paramref name="json"/> (the <paramref name="what"/> of
    /// <paramref name="path"/>); invalid UTF-8 or JSON, including an escaped lone surrogate, is a <see cref="MiniGptWeightsException"/>.
    /// </summary>
    internal static T ReadJson<T>(string path, string what, ReadOnlyMemory<byte> json, Func<JsonElement, T> read)
    {
        if (!Utf8.IsValid(json.Span)) throw new MiniGptWeightsException($"{path}: {what} is not valid UTF-8 JSON", path);
        try
        {
            using var doc = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 16 });
            return read(doc.RootElement);
        }
        catch (Exception ex) when (ex is JsonException or InvalidOperationException) // InvalidOperation: an escaped lone surrogate
        {
            throw new MiniGptWeightsException($"{path}: {what} is not valid JSON: {ex.Message}", path, null, ex);
        }
    }

    private static string ResolveFolder(string folder)
    {
        string[] candidates = ["model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin"];
        return candidates.Select(c => Path.Combine(folder, c)).FirstOrDefault(File.Exists)
            ?? throw new MiniGptWeightsException($"{folder}: no weights found (looked for {string.Join(", ", candidates)})", folder);
    }

    /// <summary>Entries of one file: <c>.safetensors</c> by name, a torch zip by content, else safetensors.</summary>
    private static List<(TensorInfo Info, TensorLocation Location)> ReadFile(string path) => Reading(path, () =>
    {
        if (path.EndsWith(".safetensors", StringComparison.OrdinalIgnoreCase)) return SafetensorsReader.ReadEntries(path);
        if (ZipDirectory.LooksLikeZip(path)) return TorchZipReader.ReadEntries(path);
        if (TorchExtensions.Any(e => path.EndsWith(e, StringComparison.OrdinalIgnoreCase)))
            throw new MiniGptWeightsException(
                $"{path}: not a zip archive. Only torch.save files written by torch >= 1.6 (zip format) and safetensors are supported; re-save legacy files with a current torch.", path);
        return SafetensorsReader.ReadEntries(path);
    });

    private static T Reading<T>(string path, Func<T> read)
    {
        try { return read(); }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new MiniGptWeightsException($"{path}: cannot read: {ex.Message}", path, null, ex);
        }
    }

    private static MappedWeightSource OpenIndex(string indexPath)
    {
        var folder = Path.GetDirectoryName(indexPath)!;
        var len = new FileInfo(indexPath).Length;
        if (len > MaxIndexBytes) throw new MiniGptWeightsException($"{indexPath}: index is {len} bytes, over the {MaxIndexBytes >> 20} MB cap", indexPath);
        var weightMap = ReadJson(indexPath, "index", Reading(indexPath, () => File.ReadAllBytes(indexPath)), root =>
        {
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("weight_map", out var map) || map.ValueKind != JsonValueKind.Object)
                throw new MiniGptWeightsException($"{indexPath}: index has no \"weight_map\" object", indexPath);
            return map.EnumerateObject().Select(p => (Key: p.Name, File: p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString()!
                : throw new MiniGptWeightsException($"{indexPath}: weight_map entry '{p.Name}' is not a file name", indexPath, p.Name))).ToList();
        });

        var shards = new Dictionary<string, Dictionary<string, (TensorInfo, TensorLocation)>>(StringComparer.Ordinal);
        var entries = new List<(TensorInfo, TensorLocation)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, file) in weightMap)
        {
            if (!seen.Add(key)) throw new MiniGptWeightsException($"{indexPath}: key '{key}' appears twice in weight_map", indexPath, key);
            if (!shards.TryGetValue(file, out var shard))
            {
                var shardPath = Path.GetFullPath(Path.Combine(folder, file));
                if (Path.IsPathRooted(file) || Path.GetDirectoryName(shardPath) != folder)
                    throw new MiniGptWeightsException($"{indexPath}: shard '{file}' is not a file name in the index's folder", indexPath, key);
                if (!File.Exists(shardPath))
                    throw new MiniGptWeightsException($"{indexPath}: shard '{file}' (of tensor '{key}') not found", shardPath, key);
                shards[file] = shard = ReadFile(shardPath).ToDictionary(e => e.Info.Key, StringComparer.Ordinal);
            }
            entries.Add(shard.TryGetValue(key, out var entry) ? entry
                : throw new MiniGptWeightsException($"{indexPath}: tensor '{key}' is not in its shard '{file}'", Path.Combine(folder, file), key));
        }
        return new MappedWeightSource($"{indexPath} ({shards.Count} shard{(shards.Count == 1 ? "" : "s")})", entries);
    }
}
