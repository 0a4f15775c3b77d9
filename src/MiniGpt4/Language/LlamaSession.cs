using MiniGpt4.Runtime;
using MiniGpt4.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>
/// One decoding state over a <see cref="LlamaForCausalLM"/>: a KV cache of up to
/// <see cref="Capacity"/> positions for <see cref="Rows"/> sequences (<c>[rows, kvHeads, allocated, headDim]</c>
/// per layer, keys and values), written in place. The cache grows by need: it is allocated for
/// <see cref="AllocatedPositions"/> positions and reallocated (the live prefix copied) when a call needs more,
/// so a short conversation never holds memory for the whole context; <see cref="Reserve"/> grows it once up front. All rows hold the same number of positions
/// (<see cref="Length"/>). A prompt is prefilled in one pass (or in chunks, each on top of what is
/// cached, with a causal mask aligned to the cache), then tokens are appended one per row per
/// <see cref="Step(ReadOnlySpan{int}, Span{float})"/>. Every call runs synchronously under its own dispose scope and inference mode.
/// Not thread-safe.
/// </summary>
internal sealed class LlamaSession : IDisposable
{
    private readonly LlamaForCausalLM _lm;
    private Tensor[] _keys, _values;
    private nint[] _keyAddresses = [], _valueAddresses = [];
    private Kernels.DecodeRow[] _decodeRows = [];
    private bool _disposed;

    /// <summary>Positions allocated at a time: growth rounds up to a multiple of this.</summary>
    internal const int Granularity = 64;

    internal LlamaSession(LlamaForCausalLM lm, int maxTokens, int rows)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxTokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(rows, 1);
        _lm = lm;
        Capacity = maxTokens;
        AllocatedPositions = Math.Min(maxTokens, Granularity);
        lm.Rotary.EnsureLength(AllocatedPositions); // grows with the cache, never to the whole context up front
        (_keys, _values) = Allocate(rows, AllocatedPositions);
        Rows = rows;
        Locate();
    }

    /// <summary>Most positions the cache can hold (it grows up to this).</summary>
    public int Capacity { get; }

    /// <summary>Positions the cache has memory for now (at most <see cref="Capacity"/>).</summary>
    public int AllocatedPositions { get; private set; }

    /// <summary>Bytes of key/value memory one position takes in one row.</summary>
    public static long BytesPerPosition(LlamaConfig cfg, ScalarType dtype)
        => 2L * cfg.NumHiddenLayers * cfg.NumKeyValueHeads * cfg.HeadDim * DTypes.ElementSize(dtype);

    /// <summary>Bytes the cache holds now (keys and values of every layer and row).</summary>
    public long AllocatedBytes => _disposed ? 0 : BytesPerPosition(_lm.Config, _lm.DType) * AllocatedPositions * Rows;

    /// <summary>
    /// Grows the allocation to hold at least <paramref name="positions"/> positions (at most
    /// <see cref="Capacity"/>); the cached positions are kept. Throws
    /// <see cref="MiniGptContextLengthException"/> beyond the capacity.
    /// </summary>
    public void Reserve(int positions)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (positions > Capacity) throw Overflow(positions - Length);
        if (positions <= AllocatedPositions) return;
        var grown = Math.Max(positions, Math.Min(Capacity, 2L * AllocatedPositions));
        var target = (int)Math.Min(Capacity, (grown + Granularity - 1) / Granularity * Granularity);
        _lm.Rotary.EnsureLength(target);
        MoveLiveTo(Allocate(Rows, target));
        AllocatedPositions = target;
    }

    /// <summary>
    /// Copies the cached positions from <paramref name="from"/> to the end, so that a call that
    /// overwrites them (a new turn that shares only a prefix) can be undone with <see cref="Restore"/>.
    /// </summary>
    internal Snapshot Save(int from)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(from);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(from, Length);
        var n = Length - from;
        if (n == 0) return new Snapshot(from, Rows, 0, [], []);
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        var keys = _keys.Select(k => k.narrow(2, from, n).clone().DetachFromDisposeScope()).ToArray();
        var values = _values.Select(v => v.narrow(2, from, n).clone().DetachFromDisposeScope()).ToArray();
        return new Snapshot(from, Rows, n, keys, values);
    }

    /// <summary>Puts the cache back as it was when <paramref name="snapshot"/> was taken (same rows, prefix unchanged since).</summary>
    internal void Restore(Snapshot snapshot)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (snapshot.Rows != Rows || snapshot.From > Length)
            throw new InvalidOperationException("The snapshot does not belong to this cache's current state.");
        Length = snapshot.From;
        if (snapshot.Count == 0) return;
        Reserve(snapshot.From + snapshot.Count);
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        for (var l = 0; l < _keys.Length; l++)
        {
            _keys[l].narrow(2, snapshot.From, snapshot.Count).copy_(snapshot.Keys[l]);
            _values[l].narrow(2, snapshot.From, snapshot.Count).copy_(snapshot.Values[l]);
        }
        Length = snapshot.From + snapshot.Count;
    }

    /// <summary>Cached keys/values of positions <c>From .. From+Count-1</c>; dispose to free.</summary>
    internal sealed record Snapshot(int From, int Rows, int Count, Tensor[] Keys, Tensor[] Values) : IDisposable
    {
        public void Dispose()
        {
            foreach (var t in Keys) t.Dispose();
            foreach (var t in Values) t.Dispose();
        }
    }

    /// <summary>Number of sequences (batch rows).</summary>
    public int Rows { get; private set; }

    /// <summary>Tokens (positions) currently in the cache, the same for every row.</summary>
    public int Length { get; private set; }

    /// <summary>Size of the logits' last dimension.</summary>
    public int VocabSize => _lm.Config.VocabSize;

    /// <summary>
    /// Appends the embeddings <paramref name="inputEmbeds"/> (<c>[rows, T, H]</c>, or <c>[T, H]</c> for
    /// every row) after the cached positions and returns the logits of the last position,
    /// <c>[rows, V]</c> float32 on the CPU (the caller owns them). Throws
    /// <see cref="MiniGptContextLengthException"/> when the cache would overflow.
    /// </summary>
    public Tensor Prefill(Tensor inputEmbeds, CancellationToken cancellationToken = default) => Run(inputEmbeds, allLogits: false, ct: cancellationToken)!;

    /// <summary>
    /// Like <see cref="Prefill"/> when the caller does not need the logits (a prompt prefilled in parts, before its last
    /// part): through the CPU decoder the head is then skipped.
    /// </summary>
    internal void PrefillWithoutLogits(Tensor inputEmbeds, CancellationToken cancellationToken = default)
    {
        using var logits = Run(inputEmbeds, allLogits: false, ct: cancellationToken, wantLogits: false);
    }

    /// <summary>Like <see cref="Prefill"/> for token ids (the same ids appended to every row).</summary>
    public Tensor PrefillTokens(ReadOnlySpan<int> ids)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        using var embeds = EmbedIds(ids, perRow: false);
        return Run(embeds, allLogits: false)!;
    }

    /// <summary>Like <see cref="Prefill"/> but returns the logits of every new position, <c>[rows, T, V]</c> (parity tests).</summary>
    public Tensor ForwardAllLogits(Tensor inputEmbeds) => Run(inputEmbeds, allLogits: true)!;

    /// <summary>
    /// Appends one token to each row and writes the next-token logits, float32 <c>[rows, V]</c>, into
    /// <paramref name="logits"/>: through the model's <see cref="Kernels.CpuDecoder"/> when it has one (no
    /// libtorch call), else through <see cref="Step(ReadOnlySpan{int})"/>.
    /// </summary>
    public void Step(ReadOnlySpan<int> tokenPerRow, Span<float> logits)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_lm.Decoder is not { } decoder)
        {
            using var result = Step(tokenPerRow);
            result.CopyTo(logits);
            return;
        }
        CheckOnePerRow(tokenPerRow);
        CheckVocabulary(tokenPerRow, nameof(tokenPerRow));
        Reserve(Length + 1); // throws MiniGptContextLengthException when the cache is full
        if (_decodeRows.Length != Rows) _decodeRows = new Kernels.DecodeRow[Rows];
        for (var r = 0; r < Rows; r++) _decodeRows[r] = new Kernels.DecodeRow(this, r, tokenPerRow[r]);
        decoder.Step(_decodeRows, logits, Math.Max(1, get_num_threads()));
        Length++;
    }

    /// <summary>
    /// One decode step for several sessions of the same model as one forward (continuous batching): appends
    /// <paramref name="tokens"/>' ids, one per row of each session in order, and writes every row's next-token logits,
    /// float32 <c>[total rows, V]</c>, into <paramref name="logits"/>. With the model's <see cref="Kernels.CpuDecoder"/>
    /// every weight is read once for all rows, and each row's logits are bit-identical to a step of its session alone
    /// (row-invariant kernel); without it each session steps on its own. Sessions must be distinct.
    /// </summary>
    public static void StepMany(ReadOnlySpan<LlamaSession> sessions, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        if (sessions.IsEmpty) return;
        var lm = sessions[0]._lm;
        var rows = 0;
        for (var i = 0; i < sessions.Length; i++)
        {
            var s = sessions[i];
            ObjectDisposedException.ThrowIf(s._disposed, s);
            if (s._lm != lm) throw new ArgumentException("The sessions belong to different models.", nameof(sessions));
            for (var j = 0; j < i; j++)
                if (ReferenceEquals(sessions[j], s)) throw new ArgumentException("A session appears twice in one step.", nameof(sessions));
            rows += s.Rows;
        }
        if (tokens.Length != rows) throw new ArgumentException($"StepMany needs one token per row: got {tokens.Length} for {rows} rows.", nameof(tokens));
        if (logits.Length != (long)rows * lm.Config.VocabSize) throw new ArgumentException($"logits must hold {rows} × {lm.Config.VocabSize} values.", nameof(logits));
        if (lm.Decoder is not { } decoder)
        {
            for (int i = 0, at = 0; i < sessions.Length; at += sessions[i].Rows, i++)
                sessions[i].Step(tokens.Slice(at, sessions[i].Rows), logits.Slice(at * lm.Config.VocabSize, sessions[i].Rows * lm.Config.VocabSize));
            return;
        }
        sessions[0].CheckVocabulary(tokens, nameof(tokens));
        foreach (var s in sessions) s.Reserve(s.Length + 1); // throws MiniGptContextLengthException when a cache is full
        var decodeRows = new Kernels.DecodeRow[rows];
        for (int i = 0, at = 0; i < sessions.Length; i++)
            for (var r = 0; r < sessions[i].Rows; r++, at++) decodeRows[at] = new Kernels.DecodeRow(sessions[i], r, tokens[at]);
        decoder.Step(decodeRows, logits, Math.Max(1, get_num_threads()));
        foreach (var s in sessions) s.Length++;
    }

    /// <summary>The address of layer <paramref name="layer"/>'s keys, <c>[rows, kvHeads, AllocatedPositions, headDim]</c> (CPU; changes when the cache grows).</summary>
    internal nint KeyAddress(int layer) => _keyAddresses[layer];

    /// <summary>The address of layer <paramref name="layer"/>'s values, as <see cref="KeyAddress"/>.</summary>
    internal nint ValueAddress(int layer) => _valueAddresses[layer];

    /// <summary>Appends one token to each row and returns next-token logits <c>[rows, V]</c> float32 on the CPU (the caller owns them).</summary>
    public Tensor Step(ReadOnlySpan<int> tokenPerRow)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        CheckOnePerRow(tokenPerRow);
        using var embeds = EmbedIds(tokenPerRow, perRow: true);
        return Run(embeds, allLogits: false)!;
    }

    /// <summary>Forgets every cached position from <paramref name="length"/> on (keeps a prefix for the next turn).</summary>
    public void Truncate(int length)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(length, Length);
        Length = length;
    }

    /// <summary>Rebuilds the rows so that new row <c>i</c> is a copy of old row <c>source[i]</c> (the count may change).</summary>
    public void ReorderRows(ReadOnlySpan<int> source)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (source.Length < 1) throw new ArgumentException("ReorderRows needs at least one row.", nameof(source));
        var rows = Rows;
        var identity = source.Length == rows;
        for (var i = 0; i < source.Length; i++)
        {
            if ((uint)source[i] >= (uint)rows)
                throw new ArgumentOutOfRangeException(nameof(source), $"row {source[i]} does not exist (the session has {rows} rows).");
            identity &= source[i] == i;
        }
        if (identity) return;

        using var index = tensor(source.ToArray().Select(i => (long)i).ToArray(), ScalarType.Int64, _lm.Device);
        // Same row count: gathered in place, so beams never hold two caches at once.
        MoveLiveTo(source.Length == rows ? (_keys, _values) : Allocate(source.Length, AllocatedPositions), index);
        Rows = source.Length;
    }

    /// <summary>Copies the live positions (the rows <paramref name="index"/> picks, or all) into <paramref name="target"/>, which becomes the cache.</summary>
    private void MoveLiveTo((Tensor[] Keys, Tensor[] Values) target, Tensor? index = null)
    {
        using (NewDisposeScope())
        using (inference_mode())
        {
            foreach (var (to, from) in target.Keys.Zip(_keys).Concat(target.Values.Zip(_values)))
            {
                var live = from.narrow(2, 0, Length);
                to.narrow(2, 0, Length).copy_(index is null ? live : live.index_select(0, index));
            }
        }
        if (target.Keys == _keys) return;
        DisposeCache();
        (_keys, _values) = target;
        Locate();
    }

    /// <summary>Records the caches' addresses for the CPU decoder (after every reallocation).</summary>
    private void Locate()
    {
        if (_lm.Device.type != DeviceType.CPU) return;
        _keyAddresses = _keys.Select(TensorMath.Address).ToArray();
        _valueAddresses = _values.Select(TensorMath.Address).ToArray();
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        DisposeCache();
    }

    /// <summary>
    /// Debug/parity view in transformers' <c>output_hidden_states</c> convention: appends the
    /// embeddings like <see cref="ForwardAllLogits"/> and returns N+1 tensors <c>[rows, T, H]</c>
    /// (float32, CPU): the input, the output of layers 0..N-2, then the final-norm output.
    /// </summary>
    internal Tensor[] HiddenStates(Tensor inputEmbeds)
    {
        var states = new List<Tensor>();
        using var logits = Run(inputEmbeds, allLogits: true, states);
        return states.ToArray();
    }

    private Tensor? Run(Tensor inputEmbeds, bool allLogits, List<Tensor>? states = null, CancellationToken ct = default, bool wantLogits = true)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var cfg = _lm.Config;
        if (!inputEmbeds.is_floating_point())
            throw new ArgumentException($"embeddings must be a floating-point tensor, got {inputEmbeds.dtype}.", nameof(inputEmbeds));
        if (inputEmbeds.dim() is not (2 or 3) || inputEmbeds.shape[^1] != cfg.HiddenSize)
            throw new ArgumentException($"embeddings must be [rows, T, {cfg.HiddenSize}] or [T, {cfg.HiddenSize}], got [{string.Join(", ", inputEmbeds.shape)}].", nameof(inputEmbeds));
        if (inputEmbeds.dim() == 3 && inputEmbeds.shape[0] != Rows)
            throw new ArgumentException($"embeddings have {inputEmbeds.shape[0]} rows, the session has {Rows}.", nameof(inputEmbeds));
        var t = inputEmbeds.shape[^2];
        if (t < 1) throw new ArgumentException("no positions to prefill.", nameof(inputEmbeds));
        if (Length + t > Capacity)
            throw Overflow(t);
        Reserve((int)(Length + t));
        if (!allLogits && states is null && Rows == 1 && _lm.DecoderPrefill && _lm.Decoder is { } decoder)
            return PrefillThroughDecoder(decoder, inputEmbeds, (int)t, ct, wantLogits);

        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        var x = inputEmbeds.to(_lm.DType, _lm.Device);
        x = x.dim() == 2 ? x.unsqueeze(0).expand(Rows, -1, -1) : x;

        long start = Length;
        var (cos, sin) = _lm.Rotary.Slice(start, t);
        var mask = t == 1 ? null : CausalMask(start, t);
        var layers = _lm.Model.Layers;
        for (var l = 0; l < layers.Count; l++)
        {
            ct.ThrowIfCancellationRequested(); // nothing was committed: Length moves only after the last layer
            states?.Add(x.to(ScalarType.Float32).cpu().MoveToOuterDisposeScope());
            var next = layers[l].Forward(x, cos, sin, _keys[l], _values[l], start, mask);
            if (l > 0) x.Dispose();
            x = next;
        }
        states?.Add(_lm.Model.Norm.call(x).to(ScalarType.Float32).cpu().MoveToOuterDisposeScope());
        Length += (int)t;

        var hidden = allLogits ? x : x.narrow(1, t - 1, 1).squeeze(1);
        return _lm.Head(hidden).cpu().MoveToOuterDisposeScope();
    }

    /// <summary>Positions per <see cref="Kernels.CpuDecoder.Prefill"/> call: enough rows for the tiles to be bound by arithmetic.</summary>
    internal const int DecoderPrefillChunk = 16;

    /// <summary>
    /// A single-row prefill as steps of the decoder, <see cref="DecoderPrefillChunk"/> positions at a time, the head for
    /// the last position only. The length moves once, at the end, as on libtorch's path.
    /// </summary>
    private Tensor? PrefillThroughDecoder(Kernels.CpuDecoder decoder, Tensor inputEmbeds, int t, CancellationToken ct, bool wantLogits)
    {
        var logits = wantLogits ? new float[_lm.Config.VocabSize] : null;
        var rows = new Kernels.DecodeRow[Math.Min(DecoderPrefillChunk, t)];
        using (var scope = NewDisposeScope())
        using (inference_mode())
        {
            var x = inputEmbeds.to(_lm.DType, CPU).contiguous();
            var address = TensorMath.Address(x);
            var rowBytes = _lm.Config.HiddenSize * x.ElementSize;
            for (var first = 0; first < t; first += rows.Length)
            {
                ct.ThrowIfCancellationRequested(); // nothing was committed: Length moves only after the last chunk
                var n = Math.Min(rows.Length, t - first);
                for (var i = 0; i < n; i++) rows[i] = new Kernels.DecodeRow(this, 0, 0, first + i);
                decoder.Prefill(rows.AsSpan(0, n), address + (nint)(first * rowBytes), first + n == t ? logits : default, Math.Max(1, get_num_threads()));
            }
        }
        Length += t;
        return logits is null ? null : tensor(logits, [1L, logits.Length], ScalarType.Float32);
    }

    // Query i (absolute position start+i) may attend key j iff j <= start+i, in the grouped layout
    // LlamaAttention uses. True = attend.
    private Tensor CausalMask(long start, long t)
    {
        // Scalars held in locals for the calls: see TensorMath.
        using var from = start.ToScalar();
        using var to = (start + t).ToScalar();
        var keys = TensorMath.Range(TensorMath.Zero, to, ScalarType.Int64, _lm.Device).unsqueeze(0);
        var queries = TensorMath.Range(from, to, ScalarType.Int64, _lm.Device).unsqueeze(1);
        return LlamaAttention.GroupedMask(keys <= queries, _lm.Config.QueriesPerKeyValue);
    }

    private Tensor EmbedIds(ReadOnlySpan<int> ids, bool perRow)
    {
        if (ids.Length == 0) throw new ArgumentException("no token ids.", nameof(ids));
        CheckVocabulary(ids, nameof(ids));
        var values = new long[ids.Length];
        for (var i = 0; i < ids.Length; i++) values[i] = ids[i];
        using var t = tensor(values, perRow ? [ids.Length, 1L] : [ids.Length], ScalarType.Int64, _lm.Device);
        return _lm.EmbedCheckedTokens(t);
    }

    private void CheckOnePerRow(ReadOnlySpan<int> tokenPerRow)
    {
        if (tokenPerRow.Length != Rows)
            throw new ArgumentException($"Step needs one token per row: got {tokenPerRow.Length}, the session has {Rows} rows.", nameof(tokenPerRow));
    }

    private void CheckVocabulary(ReadOnlySpan<int> ids, string paramName)
    {
        foreach (var id in ids)
            if ((uint)id >= (uint)VocabSize)
                throw new ArgumentOutOfRangeException(paramName, $"token id {id} is outside the vocabulary [0, {VocabSize}).");
    }

    private MiniGptContextLengthException Overflow(long adding) =>
        new($"The context is full: {Length} cached + {adding} new positions exceed the session's capacity of {Capacity}.", Length, (int)adding, Capacity);

    private (Tensor[] Keys, Tensor[] Values) Allocate(int rows, int positions)
    {
        var cfg = _lm.Config;
        var keys = new Tensor[cfg.NumHiddenLayers];
        var values = new Tensor[cfg.NumHiddenLayers];
        for (var l = 0; l < keys.Length; l++)
        {
            // Uninitialised: a position is always written before it is read (reads stop at Length),
            // and untouched pages of a long context cost no memory until the conversation gets there.
            keys[l] = empty([rows, cfg.NumKeyValueHeads, positions, cfg.HeadDim], _lm.DType, _lm.Device).DetachFromDisposeScope();
            values[l] = empty([rows, cfg.NumKeyValueHeads, positions, cfg.HeadDim], _lm.DType, _lm.Device).DetachFromDisposeScope();
        }
        return (keys, values);
    }

    private void DisposeCache()
    {
        foreach (var t in _keys) t.Dispose();
        foreach (var t in _values) t.Dispose();
    }
}
