using System.Text;
using System.Text.RegularExpressions;

namespace MiniGpt4.Tests.Support;

/// <summary>A NumPy .npy array read from disk (little-endian, C order), kept as raw bytes.</summary>
public sealed record NpyArray(string Dtype, long[] Shape, byte[] Data)
{
    /// <summary>Number of elements.</summary>
    public long Count => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>The values as float32 (from f4, f8, u1 or i8 data).</summary>
    public float[] ToFloat() => Dtype switch
    {
        "<f4" => MemoryMarshalCopy<float>(),
        "<f8" => MemoryMarshalCopy<double>().Select(d => (float)d).ToArray(),
        "|u1" => Data.Select(b => (float)b).ToArray(),
        "<i8" => MemoryMarshalCopy<long>().Select(v => (float)v).ToArray(),
        _ => throw new NotSupportedException("npy dtype " + Dtype),
    };

    /// <summary>The raw uint8 values (dtype |u1).</summary>
    public byte[] ToBytes() => Dtype == "|u1" ? Data : throw new NotSupportedException("npy dtype " + Dtype);

    private T[] MemoryMarshalCopy<T>() where T : unmanaged
        => System.Runtime.InteropServices.MemoryMarshal.Cast<byte, T>(Data).ToArray();
}

/// <summary>Minimal reader for the oracle's .npy files (format versions 1-3).</summary>
public static partial class Npy
{
    /// <summary>Reads the file at <paramref name="path"/>.</summary>
    public static NpyArray Read(string path)
    {
        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 10 || bytes[0] != 0x93 || Encoding.ASCII.GetString(bytes, 1, 5) != "NUMPY")
            throw new InvalidDataException("not an npy file: " + path);
        int major = bytes[6];
        int headerLen, offset;
        if (major == 1) { headerLen = BitConverter.ToUInt16(bytes, 8); offset = 10; }
        else { headerLen = (int)BitConverter.ToUInt32(bytes, 8); offset = 12; }
        var header = Encoding.Latin1.GetString(bytes, offset, headerLen);
        var descr = DescrRe().Match(header).Groups[1].Value;
        if (FortranRe().IsMatch(header)) throw new NotSupportedException("Fortran-order npy: " + path);
        var shapeText = ShapeRe().Match(header).Groups[1].Value;
        var shape = shapeText.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(long.Parse).ToArray();
        var data = bytes.AsSpan(offset + headerLen).ToArray();
        return new NpyArray(descr, shape, data);
    }

    [GeneratedRegex(@"'descr':\s*'([^']+)'")] private static partial Regex DescrRe();
    [GeneratedRegex(@"'fortran_order':\s*True")] private static partial Regex FortranRe();
    [GeneratedRegex(@"'shape':\s*\(([^)]*)\)")] private static partial Regex ShapeRe();
}
