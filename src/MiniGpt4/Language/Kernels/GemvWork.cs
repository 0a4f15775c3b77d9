using System.Runtime.InteropServices;
using System.Runtime.CompilerServices;
using MiniGpt4.Language.Quantization;
using MiniGpt4.Runtime;

namespace MiniGpt4.Language.Kernels;

/// <summary>
/// One parallel region of matrix-vector products: up to three weight matrices that read the same activation rows
/// (q, k and v; gate and up), split into chunks of whole output rows of about <see cref="ChunkBytes"/> of weight.
/// Reusable: set the products, then <see cref="Run(int, WorkerPool?)"/>. Every element is <see cref="GemvMath"/>'s canonical
/// dot, so the split never changes a result. Quantized weights (<see cref="DecodeWeight"/>) go through
/// <see cref="QuantMath"/>: the activation rows are quantized once per region, on the calling thread, and every
/// product of the region must then share one format. Float16 weights (<see cref="QuantFormat.F16"/>) are rounded to bf16
/// as they are read (natively), or a few rows at a time into a small per-thread buffer that the bf16 product then reads,
/// so their results are those of the weight converted while loading.
/// </summary>
internal sealed unsafe class GemvWork : PoolWork, IDisposable
{
    /// <summary>
    /// Weight bytes per chunk. Long runs per thread matter: two threads claiming neighbouring 128 KiB chunks read 2.43 GB
    /// of 7B-shaped weights at 39 GB/s here, with 2 MiB chunks at 53 GB/s (0.9 of the read bandwidth); a chunk is still
    /// short enough (about 60 µs) to rebalance when another process takes a core.
    /// </summary>
    public const long ChunkBytes = 2L << 20;

    /// <summary>Weight bytes below which a region runs on the calling thread (waking a worker costs more).</summary>
    public const long ParallelThresholdBytes = 1L << 20;

    private readonly (DecodeWeight W, nint Y, long Out, int FirstChunk)[] _products = new (DecodeWeight, nint, long, int)[3];
    private readonly QuantizedActivations _quantized = new();
    private int _count, _chunks;
    private long _rowsPerChunk, _n;
    private nint _x;
    private int _rows;
    private bool _bf16;

    /// <summary>Whether float16 products may run natively (tests turn it off to run the rounding buffer instead).</summary>
    public bool NativeF16 { get; set; } = true;

    /// <summary>The instruction set of quantized products (tests pin one; default the machine's best).</summary>
    public QuantIsa Isa { get; set; } = QuantMath.Best;

    /// <summary>Starts a region over activations <paramref name="x"/> <c>[rows, n]</c> (bf16 for bf16 weights, else float32).</summary>
    public GemvWork Begin(nint x, long n, int rows, bool bf16)
    {
        (_x, _n, _rows, _bf16, _count) = (x, n, rows, bf16, 0);
        _chunks = 0;
        return this;
    }

    private int ElementBytes => _bf16 ? 2 : 4;

    /// <summary>Adds the product <c>y[m, r] = dot(w[r], x[m])</c> for a weight <c>[outFeatures, n]</c>; y is float32 <c>[rows, outFeatures]</c>.</summary>
    public GemvWork Add(DecodeWeight w, nint y, long outFeatures)
    {
        if (_count == 0) _rowsPerChunk = Math.Max(1, ChunkBytes / w.RowBytes(_n, ElementBytes));
        else if (_products[0].W.Format != w.Format) throw new ArgumentException("The products of one region must share one weight format.", nameof(w));
        _products[_count++] = (w, y, outFeatures, _chunks);
        _chunks += (int)((outFeatures + _rowsPerChunk - 1) / _rowsPerChunk);
        return this;
    }

    /// <summary>Runs the region on up to <paramref name="threads"/> threads of <paramref name="pool"/>.</summary>
    public void Run(int threads, WorkerPool? pool = null)
    {
        long bytes = 0;
        for (var i = 0; i < _count; i++) bytes += _products[i].Out * _products[i].W.RowBytes(_n, ElementBytes);
        if (_count > 0 && _products[0].W.Format is QuantFormat.Q8 or QuantFormat.Q4)
        {
            _quantized.Ensure(_rows, _n);
            for (var m = 0; m < _rows; m++) QuantBlocks.QuantizeActivations(_x + (nint)(m * _n * ElementBytes), _bf16, _n, _quantized, m);
        }
        (pool ?? WorkerPool.Shared).Run(this, _chunks, bytes < ParallelThresholdBytes ? 1 : threads);
    }

    /// <inheritdoc />
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    public override void Run(int chunk)
    {
        var p = _count - 1;
        while (_products[p].FirstChunk > chunk) p--;
        var (w, y, outFeatures, first) = _products[p];
        var start = (chunk - first) * _rowsPerChunk;
        var end = Math.Min(outFeatures, start + _rowsPerChunk);
        if (w.Format == QuantFormat.F16) RowsF16((ushort*)w.Data, (float*)y, outFeatures, start, end);
        else if (w.Format != QuantFormat.None)
            QuantMath.Rows(w.Format, (byte*)w.Data, (ushort*)w.Scales, _quantized, (float*)y, _n, outFeatures, _rows, start, end, Isa);
        else if (_bf16) GemvMath.RowsBf16((ushort*)w.Data, (ushort*)_x, (float*)y, _n, outFeatures, _rows, start, end);
        else GemvMath.RowsF32((float*)w.Data, (float*)_x, (float*)y, _n, outFeatures, _rows, start, end);
    }

    /// <summary>Bytes of bf16 rows a thread rounds at a time: a few rows that stay in its L2 cache while they are read.</summary>
    private const long HalfGroupBytes = 256 << 10;

    /// <summary>This thread's rounded rows: a managed array, so that a pool thread that retires takes it with it.</summary>
    [ThreadStatic] private static ushort[]? t_rounded;

    /// <summary>
    /// Rows <paramref name="start"/>..<paramref name="end"/> of float16 weights: groups of rows (a multiple of twelve, so
    /// that the bf16 product's tiles of three and of four rows stay whole) rounded to bf16 into this thread's buffer,
    /// then the bf16 product over them. A row's result does not depend on its group.
    /// </summary>
    private void RowsF16(ushort* w, float* y, long outFeatures, long start, long end)
    {
        if (!_bf16) throw new InvalidOperationException("Float16 weights are read by a bf16 model.");
        if (NativeF16 && NativeKernels.HasF16Dot && GemvMath.Lanes == 16)
        {
            NativeKernels.F16Rows(w, (ushort*)_x, y, _n, outFeatures, _rows, start, end, GemvMath.WideRowElements);
            return;
        }
        var group = Math.Max(12, HalfGroupBytes / (2 * _n) / 12 * 12);
        if (t_rounded is null || t_rounded.LongLength < group * _n) t_rounded = GC.AllocateUninitializedArray<ushort>((int)(group * _n), pinned: true);
        var rounded = (ushort*)Unsafe.AsPointer(ref MemoryMarshal.GetArrayDataReference(t_rounded)); // pinned: it never moves
        for (var r = start; r < end; r += group)
        {
            var count = Math.Min(group, end - r);
            HalfRounding.Round(w + r * _n, rounded, count * _n);
            // The buffer holds rows r..r+count: index it as if it were the whole matrix.
            GemvMath.RowsBf16(rounded - r * _n, (ushort*)_x, y, _n, outFeatures, _rows, r, r + count);
        }
    }

    /// <inheritdoc />
    public void Dispose() => _quantized.Dispose();
}
