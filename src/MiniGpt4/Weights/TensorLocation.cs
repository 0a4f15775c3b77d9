namespace MiniGpt4.Weights;

/// <summary>
/// Where a tensor's bytes are: <paramref name="File"/> from byte <paramref name="Offset"/>, in the
/// file's dtype. <paramref name="Strides"/> (in elements) is null for a contiguous (row-major) tensor
/// of exactly <c>numel * elemsize</c> bytes; otherwise <paramref name="ByteLength"/> covers the
/// storage region from the first element to one past the farthest one, and the tensor is
/// <c>as_strided(shape, Strides)</c> over it.
/// </summary>
internal sealed record TensorLocation(string File, long Offset, long ByteLength, long[]? Strides = null);
