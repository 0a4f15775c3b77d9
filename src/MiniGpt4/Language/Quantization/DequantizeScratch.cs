using MiniGpt4.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language.Quantization;

/// <summary>
/// One bf16 buffer, grown to the largest quantized weight a model has dequantized, that every projection of that
/// model dequantizes into for a prefill product (<see cref="Proj"/>): a fresh buffer per product meant tens of MB of
/// new pages per projection, and new pages are what the virtual machines we measure on fault in slowest (see
/// <see cref="HugePages"/>). Owned by its <see cref="LlamaForCausalLM"/>, whose products run one at a time (the model's
/// compute gate), so one buffer serves all of them; disposed with the model.
/// </summary>
internal sealed class DequantizeScratch : IDisposable
{
    private Tensor? _buffer;

    /// <summary>A view <c>[rows, cols]</c> of the buffer (bf16, CPU), valid until the next call or <see cref="Dispose"/>.</summary>
    public Tensor For(long rows, long cols)
    {
        var count = rows * cols;
        if (_buffer is null || _buffer.NumberOfElements < count)
        {
            _buffer?.Dispose();
            _buffer = empty(count, ScalarType.BFloat16).DetachFromDisposeScope();
            HugePages.Advise(TensorMath.Address(_buffer), count * 2);
        }
        using var flat = _buffer.narrow(0, 0, count);
        return flat.view(rows, cols);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _buffer?.Dispose();
        _buffer = null;
    }
}
