using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;
using MiniGpt4.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language.Kernels;

/// <summary>One sequence of a decode step: the token it appends and the cache row it reads and extends.</summary>
/// <param name="Session">The cache (its <see cref="LlamaSession.Length"/> plus <paramref name="Offset"/> is the token's position).</param>
/// <param name="Row">The row of <paramref name="Session"/>.</param>
/// <param name="Token">The token id appended (checked against the vocabulary by the caller; unused by a prefill, which takes embeddings).</param>
/// <param name="Offset">Positions past the session's length (0 for a decode step; a prefill's rows count up from 0).</param>
internal readonly record struct DecodeRow(LlamaSession Session, int Row, int Token, int Offset = 0)
{
    /// <summary>The position this row writes and attends from: the session's length plus <see cref="Offset"/> (a prefill's later positions).</summary>
    public int Position => Session.Length + Offset;
}

/// <summary>
/// A whole LLaMA decode step on the CPU in one call, without libtorch: embedding, every block (RMSNorm, q/k/v,
/// rotary, the cache write, single-query attention over the cache, o, SwiGLU), the final norm and the head, for
/// float32 or bfloat16 weights. Decode is memory-bound: each step must stream every weight once at the machine's
/// read bandwidth, and libtorch's per-op dispatch, its bf16 matrix-vector product and its OpenMP pool (which keeps
/// spinning on the second core after each small op) kept it far from that. Here a step is a handful of parallel
/// regions per block on a <see cref="WorkerPool"/> that parks when idle.
/// </summary>
/// <remarks>
/// <para><b>Row-invariant.</b> Each row is computed on its own: norms, rotary and attention per row, every
/// product element by <see cref="GemvMath"/>'s canonical dot. A row's logits are therefore bit-identical whether
/// it runs alone or beside other rows (other conversations, other beams) and at any thread count.</para>
/// <para><b>Numerics.</b> Accumulation is float32. With bf16 weights every activation is rounded to bf16 where
/// transformers' bf16 model rounds it (norm output, each projection, rotary terms, attention output, SiLU and the
/// gate product, each residual sum, the logits), so the step matches the libtorch path within bf16 rounding; the
/// cache holds what that path would store. Attention takes the softmax in float32 over the row's own positions only.</para>
/// <para>Not thread-safe: steps of one model run one at a time (its compute gate). Scratch memory is native, grown
/// by need, and freed by <see cref="Dispose"/>.</para>
/// </remarks>
internal sealed unsafe class CpuDecoder : IDisposable
{
    private readonly LlamaForCausalLM _lm;
    private readonly int _hidden, _inter, _heads, _kvHeads, _headDim, _groups, _vocab;
    private readonly float _eps, _scale;
    private readonly bool _bf16;
    private readonly int _elem;
    private readonly Layer[] _layers;
    private readonly nint _embed, _finalNorm;
    private readonly DecodeWeight _head;
    private readonly GemvWork _gemv = new();
    private readonly AttentionWork _attention;
    private Scratch _s;
    private DecodeRow[] _rows = [];
    private bool _disposed;

    private readonly record struct Layer(nint InNorm, DecodeWeight Q, DecodeWeight K, DecodeWeight V, DecodeWeight O, nint PostNorm,
        DecodeWeight Gate, DecodeWeight Up, DecodeWeight Down);

    /// <summary>True when <paramref name="lm"/>'s weights can be decoded here (CPU, float32 or bfloat16, SIMD available).</summary>
    public static bool Supports(LlamaForCausalLM lm)
        => GemvMath.Lanes != 0 && lm.Device.type == DeviceType.CPU && lm.DType is ScalarType.Float32 or ScalarType.BFloat16;

    /// <summary>Reads the addresses of <paramref name="lm"/>'s weights (contiguous on the CPU; they must outlive this decoder).</summary>
    public CpuDecoder(LlamaForCausalLM lm)
    {
        if (!Supports(lm)) throw new NotSupportedException($"The CPU decoder needs float32 or bfloat16 weights on the CPU and AVX2 or AVX-512 (got {lm.DType} on {lm.Device}).");
        _lm = lm;
        var c = lm.Config;
        (_hidden, _inter, _heads, _kvHeads, _headDim, _vocab) = (c.HiddenSize, c.IntermediateSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.VocabSize);
        _groups = c.QueriesPerKeyValue;
        _eps = (float)c.RmsNormEps;
        _scale = 1f / MathF.Sqrt(_headDim);
        _bf16 = lm.DType == ScalarType.BFloat16;
        _elem = _bf16 ? 2 : 4;
        var model = lm.Model;
        _layers = model.Layers.Select(l =>
        {
            var (q, k, v, o) = l.SelfAttn.Projections;
            var (gate, up, down) = l.Mlp.Projections;
            return new Layer(Addr(l.InputLayerNorm.Weight), DecodeWeight.Of(q), DecodeWeight.Of(k), DecodeWeight.Of(v), DecodeWeight.Of(o),
                Addr(l.PostAttentionLayerNorm.Weight), DecodeWeight.Of(gate), DecodeWeight.Of(up), DecodeWeight.Of(down));
        }).ToArray();
        _embed = Addr(model.EmbedTokens.Weight);
        _finalNorm = Addr(model.Norm.Weight);
        _head = lm.HeadProj is { } head ? DecodeWeight.Of(head) : Addr(model.EmbedTokens.Weight);
        _attention = new AttentionWork(this);
    }

    private static nint Addr(Tensor t) => t.is_contiguous() && t.device_type == DeviceType.CPU
        ? TensorMath.Address(t)
        : throw new NotSupportedException("The CPU decoder needs contiguous CPU weights.");

    /// <summary>
    /// Appends each row's token at its session's current length and writes the next-token logits, float32
    /// <c>[rows.Length, vocab]</c>, into <paramref name="logits"/>. The caches must have room for one more position
    /// (<see cref="LlamaSession.Reserve"/>); their lengths are not advanced here.
    /// </summary>
    public void Step(ReadOnlySpan<DecodeRow> rows, Span<float> logits, int threads)
    {
        if (logits.Length != (long)rows.Length * _vocab) throw new ArgumentException($"logits must hold {rows.Length} × {_vocab} values.", nameof(logits));
        fixed (float* out0 = logits) Forward(rows, 0, out0, 0, threads);
    }

    /// <summary>
    /// Prefills positions of one session's row through the same step: row <c>i</c> of <paramref name="rows"/> (all of one
    /// session row, at consecutive <see cref="DecodeRow.Offset"/>s) takes input embedding <c>i</c> of
    /// <paramref name="embeddings"/> (model dtype, <c>[rows.Length, hidden]</c>, contiguous) instead of a token, writes its
    /// key and value, and attends causally over the positions before it, this call's earlier rows included. When
    /// <paramref name="lastLogits"/> is not empty it receives the last row's next-token logits (float32, vocab values);
    /// the head is computed for that row only. Every row's numbers are those of a decode step at its position.
    /// </summary>
    public void Prefill(ReadOnlySpan<DecodeRow> rows, nint embeddings, Span<float> lastLogits, int threads)
    {
        if (embeddings == 0) throw new ArgumentNullException(nameof(embeddings));
        if (!lastLogits.IsEmpty && lastLogits.Length != _vocab) throw new ArgumentException($"lastLogits must hold {_vocab} values.", nameof(lastLogits));
        fixed (float* out0 = lastLogits) Forward(rows, embeddings, lastLogits.IsEmpty ? null : out0, rows.Length - 1, threads);
    }

    /// <summary>
    /// The step: inputs from <paramref name="embeddings"/> (or, when 0, each row's token), every block, then the head for
    /// rows <paramref name="logitsFrom"/> onwards into <paramref name="logits"/> (<c>[rows - logitsFrom, vocab]</c>; null: no head).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Forward(ReadOnlySpan<DecodeRow> rows, nint embeddings, float* logits, int logitsFrom, int threads)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var r = rows.Length;
        var maxLength = 0;
        foreach (var row in rows) maxLength = Math.Max(maxLength, row.Position + 1);
        _s.Ensure(r, _hidden, _inter, _kvHeads * _headDim, _heads, maxLength);
        if (_rows.Length != r) _rows = new DecodeRow[r];
        rows.CopyTo(_rows); // the workers need the sessions

        for (var m = 0; m < r; m++)
            Widen(embeddings != 0 ? embeddings + (nint)m * _hidden * _elem : _embed + (nint)rows[m].Token * _hidden * _elem, _s.X + m * _hidden, _hidden);
        for (var l = 0; l < _layers.Length; l++) Block(l, r, threads);
        if (logits == null) return;
        var normed = Norm(_s.X, _finalNorm, r) + (nint)logitsFrom * _hidden * _elem;
        _gemv.Begin(normed, _hidden, r - logitsFrom, _bf16).Add(_head, (nint)logits, _vocab).Run(threads);
        RoundAll(logits, (long)(r - logitsFrom) * _vocab);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Block(int l, int r, int threads)
    {
        var w = _layers[l];
        int h = _hidden, kv = _kvHeads * _headDim;
        var normed = Norm(_s.X, w.InNorm, r);
        _gemv.Begin(normed, h, r, _bf16).Add(w.Q, (nint)_s.Q, h).Add(w.K, (nint)_s.K, kv).Add(w.V, (nint)_s.V, kv).Run(threads);
        RoundAll(_s.Q, (long)r * h);
        RoundAll(_s.K, (long)r * kv);
        RoundAll(_s.V, (long)r * kv);
        RotateAndStore(l, r);
        _attention.Layer = l;
        WorkerPool.Shared.Run(_attention, r * _heads, threads);

        var att = Pack(_s.Att, r, h);
        _gemv.Begin(att, h, r, _bf16).Add(w.O, (nint)_s.O, h).Run(threads);
        Residual(r);

        normed = Norm(_s.X, w.PostNorm, r);
        _gemv.Begin(normed, h, r, _bf16).Add(w.Gate, (nint)_s.Gate, _inter).Add(w.Up, (nint)_s.Up, _inter).Run(threads);
        for (long i = 0; i < (long)r * _inter; i++)
        {
            float g = Round(_s.Gate[i]), u = Round(_s.Up[i]);
            _s.Gate[i] = Round(Round(g / (1f + MathF.Exp(-g))) * u);
        }
        var act = Pack(_s.Gate, r, _inter);
        _gemv.Begin(act, _inter, r, _bf16).Add(w.Down, (nint)_s.O, h).Run(threads);
        Residual(r);
    }

    /// <summary>x += round(o), rounded (the block's residual sums).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Residual(int r)
    {
        var n = (long)r * _hidden;
        RoundAll(_s.O, n);
        long i = 0;
        if (GemvMath.Lanes == 16)
            for (; i + 16 <= n; i += 16) (Vector512.Load(_s.X + i) + Vector512.Load(_s.O + i)).Store(_s.X + i);
        for (; i < n; i++) _s.X[i] += _s.O[i];
        RoundAll(_s.X, n);
    }

    /// <summary>RMSNorm of every row of <paramref name="x"/> with scale <paramref name="weight"/>; returns what the next products read.</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private nint Norm(float* x, nint weight, int r)
    {
        var n = _hidden;
        for (var m = 0; m < r; m++)
        {
            var row = x + m * n;
            var inv = 1f / MathF.Sqrt(GemvMath.SumOfSquares(row, n) / n + _eps);
            var dst = _s.Normed + m * n;
            var k = 0;
            if (GemvMath.Lanes == 16)
            {
                var scale = Vector512.Create(inv);
                for (; k + 16 <= n; k += 16)
                {
                    var normed = Vector512.Load(row + k) * scale;
                    if (_bf16) normed = GemvMath.RoundToBf16(normed);
                    var y = GemvMath.Load(weight, k, _bf16) * normed;
                    (_bf16 ? GemvMath.RoundToBf16(y) : y).Store(dst + k);
                }
            }
            for (; k < n; k++) dst[k] = Round(Weight(weight, k) * Round(row[k] * inv));
        }
        return Pack(_s.Normed, r, n);
    }

    /// <summary>The activations the next products read: <paramref name="x"/> itself (float32), or a bf16 copy (its values are bf16 already).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private nint Pack(float* x, int r, long n)
    {
        if (!_bf16) return (nint)x;
        GemvMath.ToBf16(x, _s.Act, r * n);
        return (nint)_s.Act;
    }

    private float Weight(nint w, int k) => _bf16 ? GemvMath.Bf16ToFloat(((ushort*)w)[k]) : ((float*)w)[k];

    private float Round(float v) => _bf16 ? GemvMath.RoundToBf16(v) : v;

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RoundAll(float* v, long n)
    {
        if (_bf16) GemvMath.RoundToBf16(v, n);
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Widen(nint src, float* dst, int n)
    {
        if (_bf16) for (var k = 0; k < n; k++) dst[k] = GemvMath.Bf16ToFloat(((ushort*)src)[k]);
        else Buffer.MemoryCopy((void*)src, dst, n * sizeof(float), n * sizeof(float));
    }

    /// <summary>
    /// Rotates every row's query and key heads at the row's position and writes the keys and values into the
    /// row's cache (a few thousand values per row: cheaper on the calling thread than a region).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void RotateAndStore(int l, int r)
    {
        var hd = _headDim;
        for (var m = 0; m < r; m++)
        {
            var row = _rows[m];
            var position = row.Position;
            for (var head = 0; head < _heads; head++) Rotate(_s.Q + ((long)m * _heads + head) * hd, position);
            for (var g = 0; g < _kvHeads; g++)
            {
                var k = _s.K + ((long)m * _kvHeads + g) * hd;
                Rotate(k, position);
                var at = (nint)(((((long)row.Row * _kvHeads + g) * row.Session.AllocatedPositions) + position) * hd * _elem);
                Store(k, row.Session.KeyAddress(l) + at, hd);
                Store(_s.V + ((long)m * _kvHeads + g) * hd, row.Session.ValueAddress(l) + at, hd);
            }
        }
    }

    /// <summary>
    /// Single-query attention for one (row, head) per chunk over the row's own positions <c>0 .. position</c>
    /// (its new key and value included), reading each cached key and value once.
    /// </summary>
    private sealed class AttentionWork(CpuDecoder d) : PoolWork
    {
        public int Layer;

        [MethodImpl(MethodImplOptions.AggressiveOptimization)]
        public override void Run(int chunk)
        {
            int m = chunk / d._heads, head = chunk % d._heads, g = head / d._groups, hd = d._headDim;
            var row = d._rows[m];
            var session = row.Session;
            var position = row.Position;
            var kvBase = ((long)row.Row * d._kvHeads + g) * session.AllocatedPositions * hd * d._elem;
            nint keys = session.KeyAddress(Layer) + (nint)kvBase, values = session.ValueAddress(Layer) + (nint)kvBase;
            var q = d._s.Q + ((long)m * d._heads + head) * hd;

            var scores = d._s.Scores + (long)chunk * d._s.ScoreCapacity;
            var count = position + 1;
            var max = AttentionMath.Scores(keys, q, hd, count, d._bf16, d._scale, scores);
            var sum = AttentionMath.ExpSum(scores, count, max);
            var output = d._s.Att + (long)m * d._heads * hd + head * hd;
            AttentionMath.WeightedSum(values, scores, hd, count, d._bf16, output);
            var inv = 1f / sum;
            for (var i = 0; i < hd; i++) output[i] = d.Round(output[i] * inv);
        }
    }

    /// <summary>Rotates one head vector in place at <paramref name="position"/> (rotate-half convention, tables in the model's dtype).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Rotate(float* x, int position)
    {
        int hd = _headDim, half = hd / 2;
        var rotary = _lm.Rotary;
        nint cos = rotary.CosAddress + (nint)((long)position * hd * _elem), sin = rotary.SinAddress + (nint)((long)position * hd * _elem);
        Span<float> rotated = stackalloc float[hd];
        for (var i = 0; i < half; i++)
        {
            rotated[i] = -x[i + half];
            rotated[i + half] = x[i];
        }
        for (var i = 0; i < hd; i++)
        {
            var a = Round(x[i] * Weight(cos, i));
            var b = Round(rotated[i] * Weight(sin, i));
            x[i] = Round(a + b);
        }
    }

    /// <summary>Writes <paramref name="n"/> activations into the cache in the model's dtype (they are already rounded).</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private void Store(float* src, nint dst, int n)
    {
        if (_bf16) for (var i = 0; i < n; i++) ((ushort*)dst)[i] = GemvMath.FloatToBf16(src[i]);
        else Buffer.MemoryCopy(src, (void*)dst, n * sizeof(float), n * sizeof(float));
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _s.Free();
        _gemv.Dispose();
    }

    /// <summary>Native scratch, grown by need (rows, context), never per step.</summary>
    private struct Scratch
    {
        public float* X, Normed, Q, K, V, Att, O, Gate, Up, Scores;
        public ushort* Act;
        public long ScoreCapacity;
        private int _rows;

        public void Ensure(int rows, int hidden, int inter, int kv, int heads, int length)
        {
            if (rows > _rows)
            {
                Free();
                _rows = rows;
                X = Alloc((long)rows * hidden); Normed = Alloc((long)rows * hidden); Q = Alloc((long)rows * hidden);
                Att = Alloc((long)rows * hidden); O = Alloc((long)rows * hidden);
                K = Alloc((long)rows * kv); V = Alloc((long)rows * kv);
                Gate = Alloc((long)rows * inter); Up = Alloc((long)rows * inter);
                Act = (ushort*)Alloc(((long)rows * Math.Max(hidden, inter) + 1) / 2);
                ScoreCapacity = 0;
            }
            if (length > ScoreCapacity)
            {
                NativeMemory.AlignedFree(Scores);
                ScoreCapacity = Math.Max(length, 2 * ScoreCapacity);
                Scores = Alloc(_rows * heads * ScoreCapacity);
            }
        }

        private static float* Alloc(long n) => (float*)NativeMemory.AlignedAlloc((nuint)(n * sizeof(float)), 64);

        public void Free()
        {
            foreach (var p in new[] { X, Normed, Q, K, V, Att, O, Gate, Up, Scores }) NativeMemory.AlignedFree(p);
            NativeMemory.AlignedFree(Act);
            X = Normed = Q = K = V = Att = O = Gate = Up = Scores = null;
            Act = null;
            _rows = 0;
            ScoreCapacity = 0;
        }
    }
}
