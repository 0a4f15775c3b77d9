using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>Views of a weight source under other names (a sub-module's prefix, a LAVIS/HF name map).</summary>
internal static class WeightSourceExtensions
{
    /// <summary>Only the keys starting with <paramref name="prefix"/>, with the prefix stripped ("llama_model." -> "").</summary>
    public static IWeightSource WithPrefix(this IWeightSource s, string prefix) =>
        new RenamedSource(s, k => k.StartsWith(prefix, StringComparison.Ordinal) ? k[prefix.Length..] : null, $"{s.Description} [prefix '{prefix}']");

    /// <summary>Keys renamed by <paramref name="map"/> (file key -> new key); a null result drops the key.</summary>
    public static IWeightSource Renamed(this IWeightSource s, Func<string, string?> map) =>
        new RenamedSource(s, map, s.Description);

    /// <summary>
    /// The union of several sources (e.g. <c>eva_vit_g.pth</c> renamed under <c>visual_encoder.</c>, the BLIP-2
    /// file and a stage-2 checkpoint for one module). A key present in two sources is an error naming
    /// both. The view does not own the sources.
    /// </summary>
    public static IWeightSource Combine(this IWeightSource first, params IWeightSource[] others) => new CombinedSource([first, .. others]);

    private sealed class CombinedSource : IWeightSource
    {
        private readonly Dictionary<string, IWeightSource> _owner = new(StringComparer.Ordinal);
        private readonly List<string> _keys = new();

        public CombinedSource(IWeightSource[] sources)
        {
            Description = string.Join(" + ", sources.Select(s => s.Description));
            foreach (var s in sources)
                foreach (var k in s.Keys)
                {
                    if (_owner.TryGetValue(k, out var other))
                        throw new MiniGptWeightsException($"tensor '{k}' is in both {other.Description} and {s.Description}", s.Description, k);
                    _owner[k] = s;
                    _keys.Add(k);
                }
        }

        public string Description { get; }

        public IReadOnlyCollection<string> Keys => _keys;

        public bool TryGetInfo(string key, out TensorInfo info)
        {
            if (_owner.TryGetValue(key, out var s)) return s.TryGetInfo(key, out info);
            info = null!;
            return false;
        }

        public torch.Tensor Load(string key, torch.ScalarType? dtype = null, torch.Device? device = null) => Owner(key).Load(key, dtype, device);

        public long ReadInto(string key, torch.Tensor destination) => Owner(key).ReadInto(key, destination);

        private IWeightSource Owner(string key) => _owner.TryGetValue(key, out var s) ? s
            : throw new MiniGptWeightsException($"{Description}: no tensor named '{key}'", Description, key);

        public void Dispose() { }
    }

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
            if (_toInner.TryGetValue(key, out var k) && _inner.TryGetInfo(k, out var i)) { info = i with { Key = key }; return true; }
            info = null!;
            return false;
        }

        public torch.Tensor Load(string key, torch.ScalarType? dtype = null, torch.Device? device = null) => _inner.Load(Inner(key), dtype, device);

        public long ReadInto(string key, torch.Tensor destination) => _inner.ReadInto(Inner(key), destination);

        private string Inner(string key) => _toInner.TryGetValue(key, out var k) ? k
            : throw new MiniGptWeightsException($"{Description}: no tensor named '{key}'", Description, key);

        public void Dispose() { }
    }
}
