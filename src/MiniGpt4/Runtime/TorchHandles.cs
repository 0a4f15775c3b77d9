using System.Runtime.CompilerServices;
using MiniGpt4.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Runtime;

/// <summary>
/// The libtorch side of the abstractions' opaque handles: wraps a tensor in a <see cref="VisionFeatures"/>
/// or <see cref="ImageEmbeddings"/>, and gets a tensor back out (a handle made from plain values becomes a
/// tensor once, on first use).
/// </summary>
internal static class TorchHandles
{
    /// <summary>Takes ownership of <paramref name="tensor"/> (detached from any dispose scope).</summary>
    public static VisionFeatures Features(Tensor tensor) => new(Wrap(tensor), tensor.shape.ToArray(), tensor.device.ToString());

    /// <summary>Takes ownership of <paramref name="tensor"/> (detached from any dispose scope).</summary>
    public static ImageEmbeddings Embeddings(Tensor tensor) => new(Wrap(tensor), tensor.shape.ToArray(), tensor.device.ToString());

    /// <summary>The handle's tensor (owned by the handle: do not dispose it).</summary>
    public static Tensor ToTorch(this TensorHandle handle)
    {
        // A concurrent caller may install its tensor first; the storage then holds the winner.
        if (handle.Storage is float[] values) handle.ReplaceStorage(values, Wrap(tensor(values, handle.Shape.ToArray())));
        return handle.Storage is TorchTensor t
            ? t.Tensor
            : throw new ArgumentException($"{handle.GetType().Name} holds a tensor of another implementation.", nameof(handle));
    }

    private static TorchTensor Wrap(Tensor t)
    {
        t.DetachFromDisposeScope();
        return new TorchTensor(t);
    }

    private sealed class TorchTensor(Tensor tensor) : INativeTensor
    {
        public Tensor Tensor { get; } = tensor;

        public float[] ToArray()
        {
            using var scope = NewDisposeScope();
            return Tensor.detach().to(ScalarType.Float32).cpu().contiguous().data<float>().ToArray();
        }

        public void Dispose() => Tensor.Dispose();
    }

    /// <summary>Registers the built-in ImageSharp decoder as <see cref="ImageDecodingOptions"/>' default when this assembly loads.</summary>
#pragma warning disable CA2255 // a library module initializer: the abstractions assembly cannot reference the decoder that lives here
    [ModuleInitializer]
    internal static void RegisterBuiltInDecoder() => ImageDecodingOptions.BuiltInDecoder ??= Imaging.ImageSharpDecoder.Instance;
#pragma warning restore CA2255
}
