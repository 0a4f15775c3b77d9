using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using TorchSharp;

namespace MiniGpt4.Tests.Weights;

/// <summary>A tensor view of a storage, as torch.save pickles it.</summary>
internal sealed record PickledTensor(string StorageKey, long StorageOffset, long[] Shape, long[] Strides);

/// <summary>A raw pickle fragment written verbatim (for hostile files).</summary>
internal sealed record RawPickle(byte[] Bytes);

/// <summary>
/// Writes zip checkpoints shaped like torch.save's (protocol-2 pickle in &lt;stem&gt;/data.pkl,
/// storages in &lt;stem&gt;/data/&lt;key&gt;, stored), so tests can build any layout: nested
/// checkpoints with optimizer junk, shared storages, offsets, strides, and hostile pickles.
/// Values: string, long, double, bool, null, List, object[] (tuple), Dictionary (dict),
/// SortedList (OrderedDict), PickledTensor, RawPickle.
/// </summary>
internal sealed class TorchZipWriter
{
    private readonly MemoryStream _p = new();
    private readonly Dictionary<string, torch.Tensor> _storages;

    private TorchZipWriter(Dictionary<string, torch.Tensor> storages) => _storages = storages;

    /// <summary>Writes <paramref name="root"/> and the 1-D <paramref name="storages"/> to <paramref name="path"/>.</summary>
    public static void Write(string path, object? root, Dictionary<string, torch.Tensor> storages, string stem = "archive",
        IEnumerable<string>? omitRecords = null, bool compressStorages = false)
    {
        var w = new TorchZipWriter(storages);
        w.Op(0x80); w.Op(2);
        w.Value(root);
        w.Op((byte)'.');
        WriteZip(path, stem, w._p.ToArray(), storages, omitRecords, compressStorages);
    }

    /// <summary>Writes a zip whose data.pkl is exactly <paramref name="pickle"/>.</summary>
    public static void WriteZip(string path, string stem, byte[] pickle, Dictionary<string, torch.Tensor> storages,
        IEnumerable<string>? omitRecords = null, bool compressStorages = false)
    {
        var omit = new HashSet<string>(omitRecords ?? []);
        using var fs = new FileStream(path, FileMode.Create);
        using var zip = new ZipArchive(fs, ZipArchiveMode.Create);
        void Add(string name, byte[] data, bool compress)
        {
            if (omit.Contains(name)) return;
            var e = zip.CreateEntry(name, compress ? CompressionLevel.Optimal : CompressionLevel.NoCompression);
            using var s = e.Open();
            s.Write(data);
        }
        Add($"{stem}/data.pkl", pickle, false);
        Add($"{stem}/byteorder", Encoding.ASCII.GetBytes("little"), false);
        foreach (var (key, t) in storages)
        {
            using var c = t.contiguous();
            Add($"{stem}/data/{key}", c.bytes.ToArray(), compressStorages);
        }
        Add($"{stem}/version", Encoding.ASCII.GetBytes("3\n"), false);
    }

    private void Op(byte b) => _p.WriteByte(b);

    private void Bytes(ReadOnlySpan<byte> b) => _p.Write(b);

    private void Str(string s)
    {
        var b = Encoding.UTF8.GetBytes(s);
        Op((byte)'X');
        Span<byte> n = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(n, b.Length);
        Bytes(n);
        Bytes(b);
    }

    private void Global(string module, string name) { Op((byte)'c'); Bytes(Encoding.ASCII.GetBytes($"{module}\n{name}\n")); }

    private void Int(long v)
    {
        if (v >= 0 && v < 256) { Op((byte)'K'); Op((byte)v); }
        else if (v >= int.MinValue && v <= int.MaxValue) { Op((byte)'J'); Span<byte> b = stackalloc byte[4]; BinaryPrimitives.WriteInt32LittleEndian(b, (int)v); Bytes(b); }
        else { Op(0x8a); Op(8); Span<byte> b = stackalloc byte[8]; BinaryPrimitives.WriteInt64LittleEndian(b, v); Bytes(b); }
    }

    private void Value(object? v)
    {
        switch (v)
        {
            case null: Op((byte)'N'); break;
            case bool b: Op(b ? (byte)0x88 : (byte)0x89); break;
            case int i: Int(i); break;
            case long l: Int(l); break;
            case double d: { Op((byte)'G'); Span<byte> x = stackalloc byte[8]; BinaryPrimitives.WriteDoubleBigEndian(x, d); Bytes(x); break; }
            case string s: Str(s); break;
            case RawPickle r: Bytes(r.Bytes); break;
            case object[] tuple:
                Op((byte)'('); foreach (var x in tuple) Value(x); Op((byte)'t'); break;
            case List<object?> list:
                Op((byte)']'); Op((byte)'('); foreach (var x in list) Value(x); Op((byte)'e'); break;
            case SortedList<string, object?> od:
                Global("collections", "OrderedDict"); Op((byte)')'); Op((byte)'R');
                Op((byte)'('); foreach (var (k, x) in od) { Str(k); Value(x); } Op((byte)'u');
                break;
            case Dictionary<string, object?> d:
                Op((byte)'}'); Op((byte)'('); foreach (var (k, x) in d) { Str(k); Value(x); } Op((byte)'u'); break;
            case PickledTensor t:
            {
                var storage = _storages[t.StorageKey];
                Global("torch._utils", "_rebuild_tensor_v2");
                Op((byte)'(');
                Op((byte)'('); Str("storage"); Global("torch", StorageName(storage.dtype)); Str(t.StorageKey); Str("cpu"); Int(storage.NumberOfElements); Op((byte)'t');
                Op((byte)'Q');
                Int(t.StorageOffset);
                Value(t.Shape.Cast<object?>().ToArray());
                Value(t.Strides.Cast<object?>().ToArray());
                Op(0x89);
                Global("collections", "OrderedDict"); Op((byte)')'); Op((byte)'R');
                Op((byte)'t');
                Op((byte)'R');
                break;
            }
            default: throw new ArgumentException($"cannot pickle {v.GetType()}");
        }
    }

    private static string StorageName(torch.ScalarType t) => t switch
    {
        torch.ScalarType.Float32 => "FloatStorage", torch.ScalarType.Float16 => "HalfStorage", torch.ScalarType.BFloat16 => "BFloat16Storage",
        torch.ScalarType.Float64 => "DoubleStorage", torch.ScalarType.Int64 => "LongStorage", torch.ScalarType.Int32 => "IntStorage",
        torch.ScalarType.Int16 => "ShortStorage", torch.ScalarType.Int8 => "CharStorage", torch.ScalarType.Byte => "ByteStorage",
        torch.ScalarType.Bool => "BoolStorage", _ => throw new ArgumentException(t.ToString()),
    };

    /// <summary>A contiguous tensor owning storage <paramref name="key"/>.</summary>
    public static PickledTensor Whole(string key, torch.Tensor t)
    {
        var shape = t.shape;
        var strides = new long[shape.Length];
        long s = 1;
        for (var i = shape.Length - 1; i >= 0; i--) { strides[i] = s; s *= shape[i]; }
        return new PickledTensor(key, 0, shape, strides);
    }
}
