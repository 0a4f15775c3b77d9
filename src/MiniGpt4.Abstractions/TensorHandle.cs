namespace MiniGpt4.Abstractions;

/// <summary>
/// An opaque, disposable handle to a tensor that stays where its producer put it (CPU or GPU memory,
/// in the producer's own format). Components exchange these instead of managed copies; dispose a handle
/// when you no longer need it. A handle made from plain values (<c>FromArray</c>) holds a managed copy,
/// which the library moves to its device on first use.
/// </summary>
public abstract class TensorHandle : IDisposable
{
    private object? _storage;

    private protected TensorHandle(object storage, IReadOnlyList<long> shape, string device)
    {
        _storage = storage;
        Shape = shape;
        Device = device;
    }

    /// <summary>The tensor's shape.</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>The device the data lives on, e.g. <c>cpu</c> or <c>cuda:0</c>.</summary>
    public string Device { get; }

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => Volatile.Read(ref _storage) is null;

    /// <summary>
    /// What holds the values: a <c>float[]</c> (row-major, from <c>FromArray</c>) or an implementation's
    /// <see cref="INativeTensor"/>.
    /// </summary>
    internal object Storage => Volatile.Read(ref _storage) ?? throw new ObjectDisposedException(GetType().Name);

    /// <summary>Swaps a managed copy for the native tensor made from it (done once, by the library).</summary>
    internal void ReplaceStorage(object expected, INativeTensor replacement)
    {
        if (Interlocked.CompareExchange(ref _storage, replacement, expected) != expected) replacement.Dispose();
    }

    /// <summary>Copies the values to a managed array as float32 (for inspection and tests; not on hot paths).</summary>
    public float[] ToArray() => Storage switch
    {
        float[] values => (float[])values.Clone(),
        INativeTensor native => native.ToArray(),
        _ => throw new InvalidOperationException("Unknown tensor storage."),
    };

    private protected static float[] Values(ReadOnlySpan<float> values, int rows, int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        if (values.Length != (long)rows * width)
            throw new ArgumentException($"Expected {(long)rows * width} values for [{rows}, {width}], got {values.Length}.", nameof(values));
        return values.ToArray();
    }

    /// <summary>Frees the tensor.</summary>
    public void Dispose()
    {
        (Interlocked.Exchange(ref _storage, null) as IDisposable)?.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>A tensor held by an implementation (for example a libtorch tensor): the library's side of a handle.</summary>
internal interface INativeTensor : IDisposable
{
    /// <summary>The values as float32, row-major.</summary>
    float[] ToArray();
}

/// <summary>What the vision encoder produced for one image: token features <c>[1, tokens, width]</c>.</summary>
public sealed class VisionFeatures : TensorHandle
{
    internal VisionFeatures(object storage, IReadOnlyList<long> shape, string device) : base(storage, shape, device) { }

    /// <summary>
    /// Features from plain values (row-major <c>[tokens, width]</c>, float32, on the CPU), for an
    /// <see cref="IVisionEncoder"/> of your own. The projector moves them to its device.
    /// </summary>
    public static VisionFeatures FromArray(ReadOnlySpan<float> values, int tokens, int width) =>
        new(Values(values, tokens, width), new long[] { 1, tokens, width }, "cpu");
}

/// <summary>Image embeddings in the language model's space: <c>[1, image tokens, hidden]</c>.</summary>
public sealed class ImageEmbeddings : TensorHandle
{
    internal ImageEmbeddings(object storage, IReadOnlyList<long> shape, string device) : base(storage, shape, device) { }

    /// <summary>
    /// Embeddings from plain values (row-major <c>[tokens, hidden]</c>, float32, on the CPU), for an
    /// <see cref="IProjector"/> of your own. The language model converts them to its dtype and device.
    /// </summary>
    public static ImageEmbeddings FromArray(ReadOnlySpan<float> values, int tokens, int hidden) =>
        new(Values(values, tokens, hidden), new long[] { 1, tokens, hidden }, "cpu");

    /// <summary>Number of positions these embeddings take in the prompt.</summary>
    public int TokenCount => (int)Shape[^2];
}
