using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>What a weight file says about one tensor: its key, element type and shape.</summary>
internal sealed record TensorInfo(string Key, torch.ScalarType DType, long[] Shape)
{
    /// <summary>Number of elements (product of the shape; 1 for a scalar).</summary>
    public long NumElements => DTypes.NumElements(Shape);

    /// <summary>Bytes the tensor takes in its own dtype.</summary>
    public long Bytes => checked(NumElements * DTypes.ElementSize(DType));

    /// <summary>Shape and dtype as text, for messages: <c>[64, 48] Float32</c>.</summary>
    public string Describe() => $"{DTypes.FormatShape(Shape)} {DType}";
}

/// <summary>
/// A set of named tensors in one or more weight files. Keys are the file's (or a renamed view's)
/// names; tensors are read on demand, never all at once.
/// </summary>
internal interface IWeightSource : IDisposable
{
    /// <summary>File path(s), for messages.</summary>
    string Description { get; }

    /// <summary>Every tensor key, in file order.</summary>
    IReadOnlyCollection<string> Keys { get; }

    /// <summary>Dtype and shape of <paramref name="key"/>, without reading its data.</summary>
    bool TryGetInfo(string key, out TensorInfo info);

    /// <summary>
    /// A new tensor owned by the caller, with <paramref name="dtype"/> (null = the file's) on
    /// <paramref name="device"/> (null = CPU). Zero-copy (a view of a private memory map of the file)
    /// where dtype, device and alignment allow it; otherwise read and converted tensor by tensor.
    /// </summary>
    torch.Tensor Load(string key, torch.ScalarType? dtype = null, torch.Device? device = null);

    /// <summary>
    /// Reads <paramref name="key"/> straight into <paramref name="destination"/> (same shape; any
    /// device; its dtype, converting from the file's when they differ), streaming in chunks so no
    /// second full copy of the tensor is ever held. Returns the bytes written into the destination.
    /// The default implementation (for simple or fake sources) is <see cref="Load"/> then <c>copy_</c>.
    /// </summary>
    long ReadInto(string key, torch.Tensor destination)
    {
        using var noGrad = torch.no_grad();
        using var t = Load(key);
        if (!t.shape.SequenceEqual(destination.shape))
            throw new MiniGptWeightsException(
                $"{Description}: tensor '{key}' has shape {DTypes.FormatShape(t.shape)}, the destination {DTypes.FormatShape(destination.shape)}",
                Description, key);
        destination.copy_(t);
        return destination.NumberOfElements * destination.ElementSize;
    }

    /// <summary>
    /// Makes <paramref name="destination"/> (same shape) share the file's memory instead of holding a copy, when this
    /// source was opened to share it and the tensor's dtype, device and layout allow a zero-copy view; false otherwise.
    /// </summary>
    bool TryShareInto(string key, torch.Tensor destination) => false;

    /// <summary>Whether <see cref="TryShareInto"/> would share <paramref name="key"/>'s memory with a CPU tensor of its own dtype and shape.</summary>
    bool CanShare(string key) => false;
}
