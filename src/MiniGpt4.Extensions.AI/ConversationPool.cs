namespace MiniGpt4.Extensions.AI;

/// <summary>
/// Recent conversations kept for key/value cache reuse: each is a <see cref="ChatSession"/> with the signature of what it
/// holds (system text, then one entry per turn, images by content hash). A request leases the conversation sharing the
/// most leading turns with it (taken out of the pool, so no two requests ever share one: concurrent identical requests
/// each get their own, fresh or cached) and replaces its history (<see cref="ChatSession.ReplaceHistoryAsync"/>), which
/// keeps the encoded images that recur and the longest common token prefix of the cache. Returned conversations go to the
/// front; beyond <c>capacity</c> the least recently used are disposed. Their caches are the pipeline's idle caches, so
/// the pipeline's memory budget evicts them first when a request needs room.
/// </summary>
internal sealed class ConversationPool(int capacity) : IDisposable
{
    private readonly LinkedList<Entry> _entries = new();
    private bool _disposed;

    /// <summary>A cached conversation and what it holds.</summary>
    internal sealed class Entry(ChatSession session)
    {
        public ChatSession Session { get; } = session;
        public IReadOnlyList<string> Signature { get; set; } = [];
    }

    /// <summary>Conversations held now.</summary>
    public int Count { get { lock (_entries) return _entries.Count; } }

    /// <summary>Takes the conversation sharing the most leading entries with <paramref name="signature"/> (at least one), or null.</summary>
    public Entry? Rent(IReadOnlyList<string> signature)
    {
        lock (_entries)
        {
            LinkedListNode<Entry>? best = null;
            var bestLength = 0;
            for (var node = _entries.First; node is not null; node = node.Next)
            {
                var length = CommonPrefix(node.Value.Signature, signature);
                if (length > bestLength) (best, bestLength) = (node, length);
            }
            if (best is null) return null;
            _entries.Remove(best);
            return best.Value;
        }
    }

    /// <summary>Puts a conversation back (most recent first); disposes what no longer fits.</summary>
    public void Return(Entry entry)
    {
        List<Entry> dropped = new();
        lock (_entries)
        {
            if (_disposed || capacity == 0) dropped.Add(entry);
            else
            {
                _entries.AddFirst(entry);
                while (_entries.Count > capacity)
                {
                    dropped.Add(_entries.Last!.Value);
                    _entries.RemoveLast();
                }
            }
        }
        foreach (var e in dropped) e.Session.Dispose();
    }

    private static int CommonPrefix(IReadOnlyList<string> a, IReadOnlyList<string> b)
    {
        var n = Math.Min(a.Count, b.Count);
        var i = 0;
        while (i < n && a[i] == b[i]) i++;
        return i;
    }

    public void Dispose()
    {
        List<Entry> all;
        lock (_entries)
        {
            _disposed = true;
            all = _entries.ToList();
            _entries.Clear();
        }
        foreach (var e in all) e.Session.Dispose();
    }
}
