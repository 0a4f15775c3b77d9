using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>Element sizes and names of the dtypes weight files carry.</summary>
internal static class DTypes
{
    /// <summary>Bytes per element of <paramref name="dtype"/>.</summary>
    public static int ElementSize(torch.ScalarType dtype) => dtype switch
    {
        torch.ScalarType.Bool or torch.ScalarType.Byte or torch.ScalarType.Int8 => 1,
        torch.ScalarType.Int16 or torch.ScalarType.Float16 or torch.ScalarType.BFloat16 => 2,
        torch.ScalarType.Int32 or torch.ScalarType.Float32 => 4,
        torch.ScalarType.Int64 or torch.ScalarType.Float64 or torch.ScalarType.ComplexFloat32 => 8,
        torch.ScalarType.ComplexFloat64 => 16,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "dtype not supported in weight files"),
    };

    /// <summary>True for Float16, BFloat16, Float32, Float64.</summary>
    public static bool IsFloating(torch.ScalarType dtype) => dtype is torch.ScalarType.Float16 or torch.ScalarType.BFloat16
        or torch.ScalarType.Float32 or torch.ScalarType.Float64;

    /// <summary>The safetensors dtype code ("F32", "BF16", ...) of <paramref name="dtype"/>.</summary>
    public static string ToSafetensors(torch.ScalarType dtype) => dtype switch
    {
        torch.ScalarType.Float64 => "F64",
        torch.ScalarType.Float32 => "F32",
        torch.ScalarType.Float16 => "F16",
        torch.ScalarType.BFloat16 => "BF16",
        torch.ScalarType.Int64 => "I64",
        torch.ScalarType.Int32 => "I32",
        torch.ScalarType.Int16 => "I16",
        torch.ScalarType.Int8 => "I8",
        torch.ScalarType.Byte => "U8",
        torch.ScalarType.Bool => "BOOL",
        _ => throw new MiniGptWeightsException($"dtype {dtype} cannot be written to safetensors"),
    };

    /// <summary>The dtype of a safetensors code, or null when we do not support it.</summary>
    public static torch.ScalarType? FromSafetensors(string code) => code switch
    {
        "F64" => torch.ScalarType.Float64,
        "F32" => torch.ScalarType.Float32,
        "F16" => torch.ScalarType.Float16,
        "BF16" => torch.ScalarType.BFloat16,
        "I64" => torch.ScalarType.Int64,
        "I32" => torch.ScalarType.Int32,
        "I16" => torch.ScalarType.Int16,
        "I8" => torch.ScalarType.Int8,
        "U8" => torch.ScalarType.Byte,
        "BOOL" => torch.ScalarType.Bool,
        _ => null,
    };

    /// <summary>The dtype of a torch storage class name ("FloatStorage", ...), or null when unknown.</summary>
    public static torch.ScalarType? FromTorchStorage(string name) => name switch
    {
        "FloatStorage" => torch.ScalarType.Float32,
        "HalfStorage" => torch.ScalarType.Float16,
        "BFloat16Storage" => torch.ScalarType.BFloat16,
        "DoubleStorage" => torch.ScalarType.Float64,
        "LongStorage" => torch.ScalarType.Int64,
        "IntStorage" => torch.ScalarType.Int32,
        "ShortStorage" => torch.ScalarType.Int16,
        "CharStorage" => torch.ScalarType.Int8,
        "ByteStorage" => torch.ScalarType.Byte,
        "BoolStorage" => torch.ScalarType.Bool,
        _ => null,
    };

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

    /// <summary><c>[2, 3]</c>.</summary>
    public static string FormatShape(IReadOnlyList<long> shape) => "[" + string.Join(", ", shape) + "]";
}
