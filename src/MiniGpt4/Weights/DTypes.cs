using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>Element sizes and names of the dtypes weight files carry.</summary>
internal static class DTypes
{
    private sealed record Kind(torch.ScalarType DType, int Size, string Safetensors, string TorchStorage);

    private static readonly Kind[] Known =
    [
        new(torch.ScalarType.Float64, 8, "F64", "DoubleStorage"),
        new(torch.ScalarType.Float32, 4, "F32", "FloatStorage"),
        new(torch.ScalarType.Float16, 2, "F16", "HalfStorage"),
        new(torch.ScalarType.BFloat16, 2, "BF16", "BFloat16Storage"),
        new(torch.ScalarType.Int64, 8, "I64", "LongStorage"),
        new(torch.ScalarType.Int32, 4, "I32", "IntStorage"),
        new(torch.ScalarType.Int16, 2, "I16", "ShortStorage"),
        new(torch.ScalarType.Int8, 1, "I8", "CharStorage"),
        new(torch.ScalarType.Byte, 1, "U8", "ByteStorage"),
        new(torch.ScalarType.Bool, 1, "BOOL", "BoolStorage"),
    ];

    public static int ElementSize(torch.ScalarType dtype) =>
        Of(dtype)?.Size ?? throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "dtype not supported in weight files");

    public static bool IsFloating(torch.ScalarType dtype) => dtype is torch.ScalarType.Float16 or torch.ScalarType.BFloat16
        or torch.ScalarType.Float32 or torch.ScalarType.Float64;

    /// <summary>The safetensors dtype code ("F32", "BF16", ...) of <paramref name="dtype"/>.</summary>
    public static string ToSafetensors(torch.ScalarType dtype) =>
        Of(dtype)?.Safetensors ?? throw new MiniGptWeightsException($"dtype {dtype} cannot be written to safetensors");

    /// <summary>The dtype of a safetensors code, or null when we do not support it.</summary>
    public static torch.ScalarType? FromSafetensors(string code) => Known.FirstOrDefault(k => k.Safetensors == code)?.DType;

    /// <summary>The dtype of a torch storage class name ("FloatStorage", ...), or null when unknown.</summary>
    public static torch.ScalarType? FromTorchStorage(string name) => Known.FirstOrDefault(k => k.TorchStorage == name)?.DType;

    /// <summary>The torch storage class name ("FloatStorage", ...) of <paramref name="dtype"/>.</summary>
    public static string TorchStorage(torch.ScalarType dtype) =>
        Of(dtype)?.TorchStorage ?? throw new MiniGptWeightsException($"dtype {dtype} cannot be written to a torch checkpoint");

    private static Kind? Of(torch.ScalarType dtype) => Known.FirstOrDefault(k => k.DType == dtype);

    /// <summary>Product of <paramref name="shape"/>, throwing on negative dims or overflow.</summary>
    public static long NumElements(IReadOnlyList<long> shape)
    {
        long n = 1;
        foreach (var d in shape)
        {
            if (d < 0) throw new MiniGptWeightsException($"negative dimension in shape {FormatShape(shape)}");
            n = checked(n * d);
        }
        return n;
    }

    public static string FormatShape(IReadOnlyList<long> shape) => "[" + string.Join(", ", shape) + "]";
}
