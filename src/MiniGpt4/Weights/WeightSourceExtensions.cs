using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>Views of a weight source under other names (a sub-module's prefix, a LAVIS/HF name map).</summary>
internal static class WeightSourceExtensions
{
    /// <summary>Only the keys starting with <paramref name="prefix"/>, with the prefix stripped ("llama_model." -> "").</summary>
    public static IWeightSource WithPrefix(this IWeightSource s, string prefix) =>
        new RenamedSource(s, k => k.StartsWith(prefix, StringComparison.Ordinal) ? k[prefix.Length..] : null, $"{s.Description} [prefix '{prefix}']");

    /// <summary>
    /// Whether a <paramref name="dtype"/> model on <paramref name="device"/> can keep <paramref name="keys"/> as the
    /// file stores them: a bfloat16 CPU model, and every one of them (at least one) float16 and shareable with the
    /// file's memory map. A file mixing dtypes is converted instead: a float16 parameter would narrow the rest.
    /// </summary>
    public static bool KeepsFloat16(this IWeightSource s, IEnumerable<string> keys, torch.ScalarType dtype, torch.Device device)
    {
        if (dtype != torch.ScalarType.BFloat16 || device.type != DeviceType.CPU) return false;
        var any = false;
        foreach (var k in keys)
        {
            if (!s.TryGetInfo(k, out var info) || info.DType != torch.ScalarType.Float16 || !s.CanShare(k)) return false;
            any = true;
        }
        return any;
    }

    /// <summary>Keys renamed by <paramref name="map"/> (file key -> new key); a null result drops the key.</summary>
    public static IWeightSource Renamed(this IWeightSource s, Func<string, string?> map) =>
        new RenamedSource(s, map, s.Description);

    /// <summary>
    /// A renamed view. It does not own the inner source: disposing the view does nothing, so several
    /// views of one open file can be handed to different loaders; dispose the file's source yourself.
    /// </summary>
    private sealed class RenamedSource : IWeightSource
    {
        private readonly IWeightSource _inner;
        private readonly Dictionary<string, string> _toInner = new(StringComparer.Ordinal);
        private readonly List<string> _keys = new();

        public RenamedSource(IWeightSource inner, Func<string, string?> map, string description)
        {
            _inner = inner;
            Description = description;
            foreach (var k in inner.Keys)
            {
                var n = map(k);
                if (n is null) continue;
                if (!_toInner.TryAdd(n, k))
                    throw new MiniGptWeightsException($"{inner.Description}: keys '{_toInner[n]}' and '{k}' both map to '{n}'", inner.Description, k);
                _keys.Add(n);
            }
        }

        public string Description { get; }

        public IReadOnlyCollection<string> Keys => _keys;

        public bool TryGetInfo(string key, out TensorInfo info)
        {
            info = _toInner.TryGetValue(key, out var k) && _inner.TryGetInfo(k, out var i) ? i with { Key = key } : null!;
            return info is not null;
        }

        public torch.Tensor Load(string key, torch.ScalarType? dtype = null, torch.Device? device = null) => _inner.Load(Inner(key), dtype, device);

        public long ReadInto(string key, torch.Tensor destination) => _inner.ReadInto(Inner(key), destination);

        public bool TryShareInto(string key, torch.Tensor destination) => _inner.TryShareInto(Inner(key), destination);

        public bool CanShare(string key) => _toInner.ContainsKey(key) && _inner.CanShare(Inner(key));

        private string Inner(string key) => _toInner.TryGetValue(key, out var k) ? k
            : throw new MiniGptWeightsException($"{Description}: no tensor named '{key}'", Description, key);

        public void Dispose() { }
    }
}
