using MiniGpt4.Abstractions;
using MiniGpt4.Language;

namespace MiniGpt4.Generation;

/// <summary>
/// A conversation's key/value cache: a <see cref="LlamaSession"/> created on first use and grown by
/// need, plus the keys (token ids, image positions) of what it holds, for longest-common-prefix reuse.
/// One turn at a time uses it (<see cref="BeginTurn"/> / <see cref="EndTurn"/>); a turn that fails or is
/// cancelled puts it back as it was (<see cref="Rollback"/>). Between turns it may be evicted to free
/// memory (the next turn then prefills the whole prompt). Freeing runs under the model's gate, so a
/// cache disposed while a step runs is freed after that step.
/// </summary>
internal sealed class KvCache : LanguageModelCache, IEvictable
{
    private readonly Func<LlamaSession> _create;
    private readonly ComputeGate _gate;
    private readonly List<long> _keys = new();
    private LlamaSession? _session;
    private LlamaSession.Snapshot? _saved;
    private long[]? _savedKeys;
    private int _inTurn;
    private bool _disposed;

    public KvCache(object owner, ComputeGate gate, Func<LlamaSession> create)
    {
        Owner = owner; _gate = gate; _create = create;
    }

    /// <summary>The language model that created it (a cache works with its own model only).</summary>
    public object Owner { get; }

    public LlamaSession Session
    {
        get
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _session ??= _create();
        }
    }

    public override int Length => _session?.Length ?? 0;

    /// <inheritdoc />
    public long Bytes => _session?.AllocatedBytes ?? 0;

    /// <summary>Marks the start of a turn; a second concurrent turn on one cache is refused.</summary>
    public void BeginTurn()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (Interlocked.Exchange(ref _inTurn, 1) != 0)
            throw new InvalidOperationException("Another generation is using this cache (one turn at a time per conversation).");
    }

    public void EndTurn()
    {
        DropSaved();
        Volatile.Write(ref _inTurn, 0);
    }

    public int CommonPrefix(ReadOnlySpan<long> keys)
    {
        var n = Math.Min(Math.Min(keys.Length, _keys.Count), Length);
        var i = 0;
        while (i < n && keys[i] == _keys[i]) i++;
        return i;
    }

    /// <summary>
    /// Keeps the first <paramref name="common"/> positions for the new prompt, first saving what lies beyond
    /// them so that <see cref="Rollback"/> can restore the cache if the turn does not finish.
    /// </summary>
    public void KeepPrefix(int common)
    {
        var s = Session;
        DropSaved();
        _saved = s.Save(common);
        _savedKeys = _keys.ToArray();
        s.Truncate(common);
        _keys.RemoveRange(common, _keys.Count - common);
    }

    public void SetKeys(ReadOnlySpan<long> keys)
    {
        _keys.Clear();
        foreach (var k in keys) _keys.Add(k);
    }

    /// <summary>After a step the session holds the prompt plus every generated token but the last.</summary>
    public void SyncGenerated(int promptLength, List<int> tokens)
    {
        while (_keys.Count < Length && _keys.Count - promptLength < tokens.Count) _keys.Add(tokens[_keys.Count - promptLength]);
    }

    /// <summary>After beam search: one row, the prompt only (the beams' rows diverged).</summary>
    public void ResetToPrompt(int promptLength)
    {
        var s = Session;
        s.ReorderRows(new[] { 0 });
        s.Truncate(Math.Min(promptLength, s.Length));
        if (_keys.Count > promptLength) _keys.RemoveRange(promptLength, _keys.Count - promptLength);
    }

    /// <summary>Puts the cache back as it was before the turn (under the gate; nothing to do once the model is gone).</summary>
    public void Rollback()
    {
        if (_saved is not { } saved || _savedKeys is not { } keys || _session is not { } s) { DropSaved(); return; }
        try
        {
            _gate.RunIfOpen(() =>
            {
                if (s.Rows != saved.Rows) s.ReorderRows(new[] { 0 });
                s.Restore(saved);
                SetKeys(keys);
            });
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

    /// <inheritdoc />
    public void Evict()
    {
        if (Volatile.Read(ref _inTurn) != 0) return;
        FreeSession();
    }

    private void FreeSession()
    {
        var s = Interlocked.Exchange(ref _session, null);
        _keys.Clear();
        s?.Dispose();
    }

    public override void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        // A step of this cache may be running on another thread: free after it.
        _gate.RunAlways(() => { DropSaved(); FreeSession(); });
    }
}
