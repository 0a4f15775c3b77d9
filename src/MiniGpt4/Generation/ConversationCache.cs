using MiniGpt4.Abstractions;
namespace MiniGpt4.Generation;

/// <summary>
/// A conversation's key/value cache: the language model's <see cref="LanguageModelCache"/>, created on first
/// use, plus the keys (token ids, image positions) of what it holds, for longest-common-prefix reuse.
/// One turn at a time uses it (<see cref="BeginTurn"/> / <see cref="EndTurn"/>); a turn that fails or is
/// cancelled puts it back as it was (<see cref="Rollback"/>). Between turns it may be evicted to free
/// memory (the next turn then prefills the whole prompt). Given a caller's cache, it neither evicts nor frees it.
/// </summary>
internal sealed class ConversationCache(ILanguageModel model, LanguageModelCache? callersCache = null) : IDisposable
{
    private readonly List<long> _keys = new();
    private readonly bool _callers = callersCache is not null;
    private LanguageModelCache? _cache = callersCache;
    private IDisposable? _saved;
    private long[]? _savedKeys;
    private int _inTurn;
    private bool _disposed;

    /// <summary>The language model the cache belongs to.</summary>
    public ILanguageModel Model => model;

    /// <summary>The model's cache (created on first use).</summary>
    public LanguageModelCache Cache
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _cache ??= model.CreateCache();
        }
    }

    /// <summary>Positions cached.</summary>
    public int Length => _cache?.Length ?? 0;

    /// <summary>Bytes the cache holds now.</summary>
    public long Bytes => _cache?.AllocatedBytes ?? 0;

    /// <summary>Marks the start of a turn; a second concurrent turn on one cache is refused.</summary>
    public void BeginTurn()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Interlocked.Exchange(ref _inTurn, 1) != 0)
            throw new InvalidOperationException("Another generation is using this cache (one turn at a time per conversation).");
    }

    /// <summary>Marks the end of a turn (finished, failed or cancelled).</summary>
    public void EndTurn()
    {
        DropSaved();
        Volatile.Write(ref _inTurn, 0);
    }

    /// <summary>
    /// Keeps the longest prefix of the cache that <paramref name="keys"/> share (none unless <paramref name="reuse"/>; at
    /// most all but the last key, whose logits the prefill must compute), first saving what lies beyond so that
    /// <see cref="Rollback"/> can restore it. Returns the kept length.
    /// </summary>
    public int KeepCommonPrefix(ReadOnlySpan<long> keys, bool reuse)
    {
        var cache = Cache;
        var n = reuse ? Math.Min(Math.Min(keys.Length - 1, _keys.Count), cache.Length) : 0;
        var common = 0;
        while (common < n && keys[common] == _keys[common]) common++;
        DropSaved();
        _saved = cache.Save(common);
        _savedKeys = _keys.ToArray();
        cache.Truncate(common);
        _keys.RemoveRange(common, _keys.Count - common);
        return common;
    }

    /// <summary>After the prefill the cache holds the prompt.</summary>
    public void SetPrompt(ReadOnlySpan<long> keys)
    {
        _keys.Clear();
        _keys.AddRange(keys);
    }

    /// <summary>After a step the cache holds the prompt plus every generated token but the last.</summary>
    public void SyncGenerated(int promptLength, List<int> tokens)
    {
        while (_keys.Count < Length && _keys.Count - promptLength < tokens.Count) _keys.Add(tokens[_keys.Count - promptLength]);
    }

    /// <summary>After beam search: one row, the prompt only (the beams' rows diverged).</summary>
    public void ResetToPrompt(int promptLength)
    {
        var cache = Cache;
        cache.ReorderRows([0]);
        cache.Truncate(Math.Min(promptLength, cache.Length));
        if (_keys.Count > promptLength) _keys.RemoveRange(promptLength, _keys.Count - promptLength);
    }

    /// <summary>Puts the cache back as it was before the turn (nothing to do once the model is gone).</summary>
    public void Rollback()
    {
        try
        {
            if (_saved is { } saved && _savedKeys is { } keys && _cache is { } cache)
            {
                cache.Restore(saved);
                _keys.Clear();
                _keys.AddRange(keys);
            }
        }
        catch (ObjectDisposedException) { }
        finally { DropSaved(); }
    }

    private void DropSaved()
    {
        _saved?.Dispose();
        _saved = null;
        _savedKeys = null;
    }

    /// <summary>
    /// A copy of what an idle cache holds, for saving a conversation: the keys of its positions and the model's
    /// snapshot of them (<see cref="LanguageModelCache.Save"/> from position 0). Null when nothing is cached.
    /// </summary>
    public (long[] Keys, IDisposable Snapshot)? Export()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_cache is not { } cache || cache.Length == 0 || _keys.Count != cache.Length) return null;
        return (_keys.ToArray(), cache.Save(0));
    }

    /// <summary>Fills the cache from a saved snapshot of positions 0.. and their keys (a restored conversation).</summary>
    public void Import(IReadOnlyList<long> keys, IDisposable snapshot)
    {
        var cache = Cache;
        if (cache.Length > 0) cache.Truncate(0);
        _keys.Clear();
        cache.Restore(snapshot);
        if (cache.Length != keys.Count)
        {
            cache.Truncate(0);
            throw new InvalidOperationException($"The restored cache holds {cache.Length} positions for {keys.Count} keys.");
        }
        _keys.AddRange(keys);
    }

    /// <summary>Frees the memory of an idle conversation (not a caller's cache); its next turn prefills the whole prompt.</summary>
    public void Evict()
    {
        if (Volatile.Read(ref _inTurn) != 0 || _callers) return;
        _keys.Clear();
        Interlocked.Exchange(ref _cache, null)?.Dispose();
    }

    /// <summary>Frees the cache.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        DropSaved();
        _keys.Clear();
        var cache = Interlocked.Exchange(ref _cache, null);
        if (!_callers) cache?.Dispose();
    }
}
