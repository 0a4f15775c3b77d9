using MiniGpt4.Language.Quantization;
using MiniGpt4.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language.Kernels;

/// <summary>
/// A weight matrix <c>[out, in]</c> as the CPU decode path reads it: a dense float32/bf16 matrix (<see cref="Data"/>),
/// float16 rows as stored (<see cref="QuantFormat.F16"/>, read by a bf16 model), or packed
/// <see cref="QuantFormat.Q8"/>/<see cref="QuantFormat.Q4"/> rows plus their bf16 scales.
/// </summary>
/// <param name="Format">How the rows are stored (<see cref="QuantFormat.None"/>: dense, in the model's dtype).</param>
/// <param name="Data">Address of the first row (contiguous CPU memory that outlives the user).</param>
/// <param name="Scales">Address of the scales <c>[out, blocks]</c> (quantized formats only).</param>
internal readonly record struct DecodeWeight(QuantFormat Format, nint Data, nint Scales = 0)
{
    /// <summary>A dense matrix at <paramref name="address"/>.</summary>
    public static implicit operator DecodeWeight(nint address) => new(QuantFormat.None, address);

    /// <summary>The weight of <paramref name="proj"/>, dense or packed (contiguous CPU tensors).</summary>
    public static DecodeWeight Of(Proj proj) => proj.Quantized is { } q
        ? new DecodeWeight(q.Format, Address(q.Packed), Address(q.Scales))
        : new DecodeWeight(proj.Weight.dtype == ScalarType.Float16 ? QuantFormat.F16 : QuantFormat.None, Address(proj.Weight));

    /// <summary>Bytes of one row of <paramref name="n"/> inputs (dense: <paramref name="elementBytes"/> each).</summary>
    public long RowBytes(long n, int elementBytes) => Format switch
    {
        QuantFormat.None => n * elementBytes,
        QuantFormat.F16 => n * 2,
        _ => QuantLayout.RowBytesWithScales(Format, n),
    };

    private static nint Address(Tensor t) => t.is_contiguous() && t.device_type == DeviceType.CPU
        ? TensorMath.Address(t)
        : throw new NotSupportedException("The CPU decoder needs contiguous CPU weights.");
}
