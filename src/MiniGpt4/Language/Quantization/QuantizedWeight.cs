using MiniGpt4.Language.Kernels;
using MiniGpt4.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language.Quantization;

/// <summary>
/// The packed weight of a quantized linear layer: <see cref="Packed"/> (uint8 <c>[out, RowBytes]</c>) and
/// <see cref="Scales"/> (bf16 <c>[out, blocks]</c>) in the <see cref="QuantLayout"/> of <see cref="Format"/>. The
/// tensors are the owning module's buffers (filled, or memory-mapped, by the loader).
/// </summary>
internal sealed unsafe class QuantizedWeight(QuantFormat format, long inFeatures, long outFeatures, Tensor packed, Tensor scales)
{
    public QuantFormat Format { get; } = format;
    public long InFeatures { get; } = inFeatures;
    public long OutFeatures { get; } = outFeatures;
    public Tensor Packed { get; } = packed;
    public Tensor Scales { get; } = scales;

    /// <summary>Uninitialised buffers for a <c>[out, in]</c> weight (the loader fills them).</summary>
    public static QuantizedWeight Empty(QuantFormat format, long inFeatures, long outFeatures, Device device)
    {
        var packed = empty([outFeatures, QuantLayout.RowBytes(format, inFeatures)], ScalarType.Byte, device);
        var scales = empty([outFeatures, QuantLayout.BlocksPerRow(inFeatures)], ScalarType.BFloat16, device);
        packed.DetachFromDisposeScope();
        scales.DetachFromDisposeScope();
        return new QuantizedWeight(format, inFeatures, outFeatures, packed, scales);
    }

    /// <summary>
    /// Quantizes a float weight <c>[out, in]</c> (any float dtype, CPU) into new tensors <c>(packed, scales)</c> owned by
    /// the caller, rows in parallel on <paramref name="threads"/> threads.
    /// </summary>
    public static (Tensor Packed, Tensor Scales) Quantize(QuantFormat format, Tensor weight, int threads = 0)
    {
        long rows = weight.shape[0], n = weight.shape[1];
        // A scope, not `using` on the last call of a chain: the float32 copy made by `to` is a handle of its own, and
        // left to the finalizer it kept every layer's float32 copy alive (quantizing a 13B model at load ran out of 24 GB).
        using var scope = NewDisposeScope();
        var f32 = weight.to(ScalarType.Float32, CPU).contiguous();
        var packed = empty([rows, QuantLayout.RowBytes(format, n)], ScalarType.Byte).MoveToOuterDisposeScope();
        var scales = empty([rows, QuantLayout.BlocksPerRow(n)], ScalarType.BFloat16).MoveToOuterDisposeScope();
        nint w = TensorMath.Address(f32), p = TensorMath.Address(packed), s = TensorMath.Address(scales);
        long rowBytes = QuantLayout.RowBytes(format, n), blocks = QuantLayout.BlocksPerRow(n);
        Parallel.For(0, rows, new ParallelOptions { MaxDegreeOfParallelism = threads > 0 ? threads : Environment.ProcessorCount },
            r => QuantBlocks.QuantizeRow(format, (float*)w + r * n, n, (byte*)p + r * rowBytes, (ushort*)s + r * blocks));
        return (packed, scales);
    }

    /// <summary>The weight as a new dense tensor <c>[out, in]</c> of <paramref name="dtype"/> (prefill's matrix products use it).</summary>
    public Tensor Dequantize(ScalarType dtype)
    {
        var dense = empty([OutFeatures, InFeatures], ScalarType.BFloat16);
        // A fresh buffer of tens of MB: 2 MiB pages fault in hundreds of times faster (see HugePages).
        HugePages.Advise(TensorMath.Address(dense), OutFeatures * InFeatures * 2);
        DequantizeInto(dense);
        if (dtype == ScalarType.BFloat16 && Packed.device_type == DeviceType.CPU) return dense;
        using (dense) return dense.to(dtype, Packed.device);
    }

    /// <summary>Writes the weight into <paramref name="dense"/>, a contiguous bf16 CPU tensor <c>[out, in]</c>.</summary>
    public void DequantizeInto(Tensor dense)
    {
        if (dense.dtype != ScalarType.BFloat16 || dense.device_type != DeviceType.CPU || !dense.is_contiguous()
            || dense.NumberOfElements != OutFeatures * InFeatures)
            throw new ArgumentException($"Expected a contiguous bf16 CPU tensor of [{OutFeatures}, {InFeatures}].", nameof(dense));
        using var packedCpu = Packed.device_type == DeviceType.CPU ? Packed.alias() : Packed.cpu();
        using var scalesCpu = Scales.device_type == DeviceType.CPU ? Scales.alias() : Scales.cpu();
        nint p = TensorMath.Address(packedCpu), s = TensorMath.Address(scalesCpu), d = TensorMath.Address(dense);
        long n = InFeatures, rowBytes = QuantLayout.RowBytes(Format, n), blocks = QuantLayout.BlocksPerRow(n);
        var format = Format;
        Parallel.For(0, OutFeatures, new ParallelOptions { MaxDegreeOfParallelism = Math.Max(1, get_num_threads()) },
            r => QuantBlocks.DequantizeRow(format, (byte*)p + r * rowBytes, (ushort*)s + r * blocks, n, (ushort*)d + r * n));
    }
}
