using MiniGpt4.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>
/// Rotary position embedding in the Hugging Face "rotate-half" convention (dimension j pairs with j + d/2, which is
/// what HF-converted q/k weights expect). As in transformers 4.30, <c>inv_freq = 1 / theta^(2j/d)</c> and the angle
/// table <c>t · inv_freq</c> are computed in float32 and cos/sin are cast to the activation dtype before they are
/// applied. Not a module: the tables are constants, never loaded (checkpoint <c>rotary_emb.inv_freq</c> buffers are
/// ignored), built only up to the positions a session asks for (<see cref="EnsureLength"/>), never eagerly for
/// <c>max_position_embeddings</c>: each row depends only on its position.
/// </summary>
internal sealed class RotaryEmbedding(int headDim, double theta, ScalarType dtype, Device device) : IDisposable
{
    private Tensor _cos = empty(0, headDim, dtype: dtype, device: device).DetachFromDisposeScope();
    private Tensor _sin = empty(0, headDim, dtype: dtype, device: device).DetachFromDisposeScope();

    /// <summary>Number of positions the tables currently cover.</summary>
    public long Length => _cos.shape[0];

    /// <summary>Grows the tables (also past <c>max_position_embeddings</c>, as HF does) so they cover <paramref name="length"/> positions.</summary>
    public void EnsureLength(int length)
    {
        if (length <= Length) return;
        var (cos, sin) = Build(length);
        Dispose();
        (_cos, _sin) = (cos, sin);
        if (device.type == DeviceType.CPU) (CosAddress, SinAddress) = (TensorMath.Address(cos), TensorMath.Address(sin));
    }

    /// <summary>The cos table's first element on the CPU (<c>[Length, headDim]</c>, activation dtype, contiguous; 0 before the first growth or on another device).</summary>
    internal nint CosAddress { get; private set; }

    /// <summary>The sin table's first element on the CPU, as <see cref="CosAddress"/>.</summary>
    internal nint SinAddress { get; private set; }

    /// <summary>cos and sin rows <c>[count, headDim]</c> for positions <c>start .. start+count-1</c>, in the activation dtype.</summary>
    public (Tensor Cos, Tensor Sin) Slice(long start, long count)
        => (_cos.narrow(0, start, count), _sin.narrow(0, start, count));

    /// <summary>
    /// cos and sin for per-row positions <paramref name="positions"/> (int64 <c>[B, T]</c>, each below <see cref="Length"/>)
    /// as <c>[B, 1, T, headDim]</c>, which broadcasts over the heads (intermediates go to the caller's dispose scope).
    /// </summary>
    public (Tensor Cos, Tensor Sin) At(Tensor positions) => (_cos[positions].unsqueeze(1), _sin[positions].unsqueeze(1));

    /// <summary>Rotates <paramref name="x"/> <c>[..., T, headDim]</c> by the angles in cos/sin <c>[T, headDim]</c> (or anything broadcasting to x).</summary>
    public static Tensor Apply(Tensor x, Tensor cos, Tensor sin)
    {
        using var scope = NewDisposeScope();
        var half = x.shape[^1] / 2;
        var rotated = cat([x.narrow(-1, half, half).neg(), x.narrow(-1, 0, half)], -1);
        return (x * cos).Plus(rotated * sin).MoveToOuterDisposeScope();
    }

    private (Tensor Cos, Tensor Sin) Build(int length)
    {
        using var scope = NewDisposeScope();
        // Constants, never inference tensors (even for a session created under inference mode):
        // autograd refuses to save inference tensors for backward, and Apply's products save cos/sin.
        using var normal = inference_mode(false);
        using var _ = no_grad();
        // Scalars held in locals for the calls: see TensorMath.
        using var width = headDim.ToScalar();
        using var two = 2.ToScalar();
        using var len = length.ToScalar();
        var exponents = arange(TensorMath.Zero, width, two, dtype: ScalarType.Int64, device: device).to(ScalarType.Float32).div_(width);
        var invFreq = pow(tensor((float)theta, ScalarType.Float32, device), exponents).reciprocal_();
        var freqs = outer(TensorMath.Range(TensorMath.Zero, len, ScalarType.Float32, device), invFreq);
        var emb = cat([freqs, freqs], -1);
        return (emb.cos().to(dtype).DetachFromDisposeScope(), emb.sin().to(dtype).DetachFromDisposeScope());
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _cos.Dispose();
        _sin.Dispose();
    }
}
