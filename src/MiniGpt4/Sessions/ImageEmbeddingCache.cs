using MiniGpt4.Abstractions;
using MiniGpt4.Runtime;
using static TorchSharp.torch;

namespace MiniGpt4.Sessions;

/// <summary>
/// The pipeline's recently encoded images, by content (<see cref="ImageContentKey"/>): an image seen again, in another
/// session, a replayed chat or a stateless request, is not encoded twice (EVA-ViT-g costs seconds per image on a CPU;
/// a copy of its embeddings, 128 KiB to 4 MiB, costs microseconds). Entries are private float32 copies on the CPU, so
/// no caller can dispose them; a hit hands out a new handle (the language model converts it to its dtype exactly, as it
/// does the encoder's own output). Least recently used entries go first once <c>capacityBytes</c> is exceeded;
/// capacity 0 disables the cache. Thread-safe.
/// </summary>
internal sealed class ImageEmbeddingCache(long capacityBytes)
{
    private readonly Dictionary<string, LinkedListNode<Entry>> _byKey = [];
    private readonly LinkedList<Entry> _recent = [];
    private readonly Lock _lock = new();
    private long _bytes;

    private sealed record Entry(string Key, float[] Values, int Tokens, int Hidden);

    /// <summary>Bytes the entries hold now.</summary>
    public long Bytes { get { lock (_lock) return _bytes; } }

    /// <summary>Number of entries.</summary>
    public int Count { get { lock (_lock) return _byKey.Count; } }

    /// <summary>A new handle on the embeddings stored under <paramref name="key"/>, or null.</summary>
    public ImageEmbeddings? TryGet(byte[]? key)
    {
        if (key is null || capacityBytes == 0) return null;
        Entry entry;
        lock (_lock)
        {
            if (!_byKey.TryGetValue(Convert.ToHexString(key), out var node)) return null;
            _recent.Remove(node);
            _recent.AddFirst(node);
            entry = node.Value;
        }
        return ImageEmbeddings.FromArray(entry.Values, entry.Tokens, entry.Hidden);
    }

    /// <summary>Stores a copy of <paramref name="embeddings"/> under <paramref name="key"/> (nothing when the key is null or it cannot fit).</summary>
    public void Add(byte[]? key, ImageEmbeddings embeddings)
    {
        if (key is null || capacityBytes == 0) return;
        var (tokens, hidden) = ((int)embeddings.Shape[^2], (int)embeddings.Shape[^1]);
        var bytes = 4L * tokens * hidden;
        if (bytes > capacityBytes) return;
        float[] values;
        using (NewDisposeScope())
        {
            var flat = embeddings.ToTorch().to(ScalarType.Float32).cpu().contiguous();
            values = new float[tokens * hidden];
            flat.CopyTo(values);
        }
        var hex = Convert.ToHexString(key);
        lock (_lock)
        {
            if (_byKey.ContainsKey(hex)) return;
            while (_bytes + bytes > capacityBytes && _recent.Last is { } oldest)
            {
                _recent.RemoveLast();
                _byKey.Remove(oldest.Value.Key);
                _bytes -= 4L * oldest.Value.Values.Length;
            }
            _byKey[hex] = _recent.AddFirst(new Entry(hex, values, tokens, hidden));
            _bytes += bytes;
        }
    }
}
