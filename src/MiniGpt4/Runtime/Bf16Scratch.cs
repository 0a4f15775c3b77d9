using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Runtime;

/// <summary>
/// One bf16 buffer, grown to the largest weight a model has needed, that the model's stored weights are written into
/// for a product: the language model's int8/int4 weights dequantized, and float16 weights kept as stored (the language
/// model's projections, the vision tower's linear layers) rounded. A fresh buffer per product meant tens of MB of new
/// pages per product, and new pages are what the virtual machines we measure on fault in slowest (see
/// <see cref="HugePages"/>). Owned by its model, whose products run one at a time (the model's compute gate), so one
/// buffer serves all of them; disposed with the model.
/// </summary>
internal sealed class Bf16Scratch : IDisposable
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
