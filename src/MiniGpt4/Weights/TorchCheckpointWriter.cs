using System.Buffers.Binary;
using System.Text;
using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>
/// Writes a small state dict as <c>torch.save</c> does (the zip format of torch &gt;= 1.6, read back by
/// <see cref="TorchZipReader"/> and by <c>torch.load</c>): <c>&lt;stem&gt;/data.pkl</c> (a protocol-2 pickle of an
/// <c>OrderedDict</c> of <c>_rebuild_tensor_v2</c> calls, optionally under <c>{"model": ...}</c> as LAVIS and MiniGPT-4
/// save their checkpoints), <c>&lt;stem&gt;/byteorder</c>, one stored record <c>&lt;stem&gt;/data/N</c> per tensor with its
/// data aligned to 64 bytes, and <c>&lt;stem&gt;/version</c>. Tensors are copied into memory, so it is meant for
/// checkpoints of a few tensors (a trained projection), not for whole models; no Zip64.
/// </summary>
internal static class TorchCheckpointWriter
{
    private const uint LocalSig = 0x04034b50, CentralSig = 0x02014b50, EndSig = 0x06054b50;

    /// <summary>Writes <paramref name="tensors"/> (any device; written as contiguous CPU data) to <paramref name="path"/> via a temporary file.</summary>
    public static void Write(string path, IReadOnlyList<KeyValuePair<string, torch.Tensor>> tensors, bool underModelKey)
    {
        var stem = Path.GetFileNameWithoutExtension(path);
        var records = new List<(string Name, byte[] Data)>
        {
            ($"{stem}/data.pkl", Pickle(tensors, underModelKey)),
            ($"{stem}/byteorder", "little"u8.ToArray()),
        };
        for (var i = 0; i < tensors.Count; i++)
        {
            var ms = new MemoryStream();
            SafetensorsWriter.WriteData(ms, tensors[i].Value);
            records.Add(($"{stem}/data/{i}", ms.ToArray()));
        }
        records.Add(($"{stem}/version", "3\n"u8.ToArray()));
        if (records.Sum(r => (long)r.Data.Length + 200) >= uint.MaxValue)
            throw new ArgumentException("the checkpoint is too large for this writer (no Zip64)", nameof(tensors));

        var tmp = path + ".tmp";
        try
        {
            using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                var central = new List<(byte[] Name, uint Crc, int Size, long Offset)>();
                foreach (var (name, data) in records)
                {
                    var nameBytes = Encoding.UTF8.GetBytes(name);
                    var crc = Crc32(data);
                    var offset = fs.Position;
                    var pad = (int)((64 - (offset + 30 + nameBytes.Length + 4) % 64) % 64);
                    var h = new byte[30 + nameBytes.Length + 4 + pad];
                    var w = h.AsSpan();
                    BinaryPrimitives.WriteUInt32LittleEndian(w, LocalSig);
                    BinaryPrimitives.WriteUInt16LittleEndian(w[4..], 20);
                    BinaryPrimitives.WriteUInt32LittleEndian(w[14..], crc);
                    BinaryPrimitives.WriteUInt32LittleEndian(w[18..], (uint)data.Length);
                    BinaryPrimitives.WriteUInt32LittleEndian(w[22..], (uint)data.Length);
                    BinaryPrimitives.WriteUInt16LittleEndian(w[26..], (ushort)nameBytes.Length);
                    BinaryPrimitives.WriteUInt16LittleEndian(w[28..], (ushort)(4 + pad));
                    nameBytes.CopyTo(h, 30);
                    var x = w[(30 + nameBytes.Length)..];
                    BinaryPrimitives.WriteUInt16LittleEndian(x, 0x4246); // "FB": torch's padding field
                    BinaryPrimitives.WriteUInt16LittleEndian(x[2..], (ushort)pad);
                    x[4..].Fill((byte)'Z');
                    fs.Write(h);
                    fs.Write(data);
                    central.Add((nameBytes, crc, data.Length, offset));
                }
                var start = fs.Position;
                foreach (var (name, crc, size, offset) in central)
                {
                    var h = new byte[46 + name.Length];
                    var w = h.AsSpan();
                    BinaryPrimitives.WriteUInt32LittleEndian(w, CentralSig);
                    BinaryPrimitives.WriteUInt16LittleEndian(w[4..], 20);
                    BinaryPrimitives.WriteUInt16LittleEndian(w[6..], 20);
                    BinaryPrimitives.WriteUInt32LittleEndian(w[16..], crc);
                    BinaryPrimitives.WriteUInt32LittleEndian(w[20..], (uint)size);
                    BinaryPrimitives.WriteUInt32LittleEndian(w[24..], (uint)size);
                    BinaryPrimitives.WriteUInt16LittleEndian(w[28..], (ushort)name.Length);
                    BinaryPrimitives.WriteUInt32LittleEndian(w[42..], (uint)offset);
                    name.CopyTo(h, 46);
                    fs.Write(h);
                }
                var e = new byte[22];
                BinaryPrimitives.WriteUInt32LittleEndian(e, EndSig);
                BinaryPrimitives.WriteUInt16LittleEndian(e.AsSpan(8), (ushort)central.Count);
                BinaryPrimitives.WriteUInt16LittleEndian(e.AsSpan(10), (ushort)central.Count);
                BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(12), (uint)(fs.Position - start));
                BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(16), (uint)start);
                fs.Write(e);
            }
            File.Move(tmp, path, overwrite: true);
        }
        catch
        {
            File.Delete(tmp);
            throw;
        }
    }

    /// <summary>
    /// The state dict as torch.save pickles it (protocol 2): an OrderedDict of
    /// <c>torch._utils._rebuild_tensor_v2(persistent storage ('storage', torch.XStorage, 'N', 'cpu', numel), 0, size, stride, False, OrderedDict())</c>.
    /// </summary>
    private static byte[] Pickle(IReadOnlyList<KeyValuePair<string, torch.Tensor>> tensors, bool underModelKey)
    {
        var p = new MemoryStream();
        void Op(byte b) => p.WriteByte(b);
        void Str(string s)
        {
            var bytes = Encoding.UTF8.GetBytes(s);
            Op((byte)'X');
            Span<byte> n = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(n, (uint)bytes.Length);
            p.Write(n);
            p.Write(bytes);
        }
        void Global(string module, string name) => p.Write(Encoding.ASCII.GetBytes($"c{module}\n{name}\n"));
        void Int(long v)
        {
            if (v is < 0 or > int.MaxValue) throw new ArgumentOutOfRangeException(nameof(v), v, "tensor sizes beyond int32 are not written here");
            Op((byte)'J');
            Span<byte> n = stackalloc byte[4];
            BinaryPrimitives.WriteInt32LittleEndian(n, (int)v);
            p.Write(n);
        }
        void Tuple(IEnumerable<long> values) { Op((byte)'('); foreach (var v in values) Int(v); Op((byte)'t'); }

        Op(0x80); Op(2); // PROTO 2
        if (underModelKey) { Op((byte)'}'); Str("model"); }
        Global("collections", "OrderedDict"); Op((byte)')'); Op((byte)'R');
        Op((byte)'(');
        for (var i = 0; i < tensors.Count; i++)
        {
            var (key, t) = (tensors[i].Key, tensors[i].Value);
            var storage = DTypes.TorchStorage(t.dtype);
            Str(key);
            Global("torch._utils", "_rebuild_tensor_v2");
            Op((byte)'(');
            Op((byte)'('); Str("storage"); Global("torch", storage); Str(i.ToString(System.Globalization.CultureInfo.InvariantCulture)); Str("cpu"); Int(t.NumberOfElements); Op((byte)'t');
            Op((byte)'Q'); // BINPERSID
            Int(0);
            Tuple(t.shape);
            var strides = new long[t.shape.Length];
            for (long k = t.shape.Length - 1, acc = 1; k >= 0; acc *= t.shape[k], k--) strides[k] = acc;
            Tuple(strides);
            Op(0x89); // False
            Global("collections", "OrderedDict"); Op((byte)')'); Op((byte)'R');
            Op((byte)'t');
            Op((byte)'R');
        }
        Op((byte)'u'); // SETITEMS
        if (underModelKey) Op((byte)'s');
        Op((byte)'.');
        return p.ToArray();
    }

    private static uint Crc32(ReadOnlySpan<byte> data)
    {
        var crc = 0xFFFFFFFFu;
        foreach (var b in data)
        {
            crc ^= b;
            for (var k = 0; k < 8; k++) crc = (crc & 1) != 0 ? 0xEDB88320 ^ (crc >> 1) : crc >> 1;
        }
        return ~crc;
    }
}
