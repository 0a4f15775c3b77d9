using TorchSharp;

namespace MiniGpt4.Abstractions;

/// <summary>
/// An opaque, disposable handle to a tensor that stays on its device (CPU or GPU memory). Components
/// exchange these instead of managed copies; dispose a handle when you no longer need it.
/// </summary>
public abstract class TensorHandle : IDisposable
{
    private torch.Tensor? _tensor;

    private protected TensorHandle(torch.Tensor tensor)
    {
        _tensor = tensor;
        _tensor.DetachFromDisposeScope();
        Shape = tensor.shape.ToArray();
        Device = tensor.device.ToString();
    }

    /// <summary>The tensor's shape.</summary>
    public IReadOnlyList<long> Shape { get; }

    /// <summary>The device the data lives on, e.g. <c>cpu</c> or <c>cuda:0</c>.</summary>
    public string Device { get; }

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => _tensor is null;

    internal torch.Tensor Tensor => _tensor ?? throw new ObjectDisposedException(GetType().Name);

    /// <summary>Copies the values to a managed array as float32 (for inspection and tests; not on hot paths).</summary>
    public float[] ToArray()
    {
        using var scope = torch.NewDisposeScope();
        return Tensor.detach().to(torch.ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
    }

    private protected static torch.Tensor FromValues(ReadOnlySpan<float> values, int rows, int width)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rows);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(width);
        if (values.Length != (long)rows * width)
            throw new ArgumentException($"Expected {(long)rows * width} values for [{rows}, {width}], got {values.Length}.", nameof(values));
        return torch.tensor(values.ToArray(), new long[] { 1, rows, width });
    }

    /// <summary>Frees the tensor.</summary>
    public void Dispose()
    {
        Interlocked.Exchange(ref _tensor, null)?.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>What the vision encoder produced for one image: token features <c>[1, tokens, width]</c>.</summary>
public sealed class VisionFeatures : TensorHandle
{
    internal VisionFeatures(torch.Tensor tensor) : base(tensor) { }

    /// <summary>
    /// Features from plain values (row-major <c>[tokens, width]</c>, float32, on the CPU), for an
    /// <see cref="IVisionEncoder"/> of your own. The projector moves them to its device.
    /// </summary>
    public static VisionFeatures FromArray(ReadOnlySpan<float> values, int tokens, int width) =>
        new(FromValues(values, tokens, width));
}

/// <summary>Image embeddings in the language model's space: <c>[1, image tokens, hidden]</c>.</summary>
public sealed class ImageEmbeddings : TensorHandle
{
    internal ImageEmbeddings(torch.Tensor tensor) : base(tensor) { }

    /// <summary>
    /// Embeddings from plain values (row-major <c>[tokens, hidden]</c>, float32, on the CPU), for an
    /// <see cref="IProjector"/> of your own. The language model converts them to its dtype and device.
    /// </summary>
    public static ImageEmbeddings FromArray(ReadOnlySpan<float> values, int tokens, int hidden) =>
        new(FromValues(values, tokens, hidden));

    /// <summary>Number of positions these embeddings take in the prompt.</summary>
    public int TokenCount => (int)Shape[^2];
}
