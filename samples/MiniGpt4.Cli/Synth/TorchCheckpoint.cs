using System.Buffers.Binary;
using System.Text;

namespace MiniGpt4.Cli.Synth;

/// <summary>
/// Writes a <c>torch.save</c> checkpoint (the zip format of torch &gt;= 1.6) the way torch does: records
/// <c>&lt;stem&gt;/data.pkl</c> (a protocol-2 pickle of the state dict, optionally under "model" as LAVIS and
/// MiniGPT-4 save it), <c>&lt;stem&gt;/byteorder</c>, one stored record <c>&lt;stem&gt;/data/N</c> per tensor
/// with its data aligned to 64 bytes, and <c>&lt;stem&gt;/version</c>; Zip64 where sizes or offsets need it.
/// Tensor data is streamed (the CRC-32 computed on the way and patched into the local header).
/// </summary>
internal static class TorchCheckpoint
{
    private const uint LocalSig = 0x04034b50, CentralSig = 0x02014b50, EndSig = 0x06054b50, End64Sig = 0x06064b50, Locator64Sig = 0x07064b50;

    public static void Write(string path, IReadOnlyList<TensorSpec> tensors, TensorData data, bool underModelKey)
    {
        var stem = Path.GetFileNameWithoutExtension(path);
        var tmp = path + ".tmp";
        var central = new List<(string Name, uint Crc, long Size, long Offset)>();
        try
        {
            using var fs = new FileStream(tmp, FileMode.Create, FileAccess.ReadWrite, FileShare.None, 1 << 16);
            void Small(string name, byte[] content)
            {
                var offset = WriteLocalHeader(fs, name, content.Length, Crc32.Compute(content));
                fs.Write(content);
                central.Add((name, Crc32.Compute(content), content.Length, offset));
            }
            Small($"{stem}/data.pkl", Pickle(tensors, data.DType, underModelKey));
            Small($"{stem}/byteorder", "little"u8.ToArray());
            for (var i = 0; i < tensors.Count; i++)
            {
                var name = $"{stem}/data/{i}";
                var size = data.Bytes(tensors[i]);
                var offset = WriteLocalHeader(fs, name, size, 0);
                var crc = new Crc32();
                data.Write(fs, tensors[i], Path.GetFileName(path), crc.Append);
                var end = fs.Position;
                fs.Position = offset + 14;
                var c = new byte[4];
                BinaryPrimitives.WriteUInt32LittleEndian(c, crc.Value);
                fs.Write(c);
                fs.Position = end;
                central.Add((name, crc.Value, size, offset));
            }
            Small($"{stem}/version", "3\n"u8.ToArray());
            WriteCentralDirectory(fs, central);
        }
        catch
        {
            File.Delete(tmp); // no half-written file left behind (cancelled, disk full)
            throw;
        }
        File.Move(tmp, path, overwrite: true);
    }

    /// <summary>Writes a stored record's local header (Zip64 sizes when needed, padding so the data starts on 64 bytes); returns its offset.</summary>
    private static long WriteLocalHeader(Stream s, string name, long size, uint crc)
    {
        var offset = s.Position;
        var nameBytes = Encoding.UTF8.GetBytes(name);
        var zip64 = size >= 0xFFFFFFFF;
        var extraBase = (zip64 ? 20 : 0) + 4;
        var pad = (int)((64 - (offset + 30 + nameBytes.Length + extraBase) % 64) % 64);
        var h = new byte[30 + nameBytes.Length + extraBase + pad];
        var w = h.AsSpan();
        BinaryPrimitives.WriteUInt32LittleEndian(w, LocalSig);
        BinaryPrimitives.WriteUInt16LittleEndian(w[4..], (ushort)(zip64 ? 45 : 20));
        BinaryPrimitives.WriteUInt32LittleEndian(w[14..], crc);
        BinaryPrimitives.WriteUInt32LittleEndian(w[18..], zip64 ? 0xFFFFFFFF : (uint)size);
        BinaryPrimitives.WriteUInt32LittleEndian(w[22..], zip64 ? 0xFFFFFFFF : (uint)size);
        BinaryPrimitives.WriteUInt16LittleEndian(w[26..], (ushort)nameBytes.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(w[28..], (ushort)(extraBase + pad));
        nameBytes.CopyTo(h, 30);
        var x = w[(30 + nameBytes.Length)..];
        if (zip64)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(x, 1);
            BinaryPrimitives.WriteUInt16LittleEndian(x[2..], 16);
            BinaryPrimitives.WriteUInt64LittleEndian(x[4..], (ulong)size);
            BinaryPrimitives.WriteUInt64LittleEndian(x[12..], (ulong)size);
            x = x[20..];
        }
        BinaryPrimitives.WriteUInt16LittleEndian(x, 0x4246); // "FB": torch's padding field
        BinaryPrimitives.WriteUInt16LittleEndian(x[2..], (ushort)pad);
        x[4..].Fill((byte)'Z');
        s.Write(h);
        return offset;
    }

    private static void WriteCentralDirectory(Stream s, List<(string Name, uint Crc, long Size, long Offset)> records)
    {
        var start = s.Position;
        foreach (var (name, crc, size, offset) in records)
        {
            var nameBytes = Encoding.UTF8.GetBytes(name);
            var big = new List<ulong>();
            if (size >= 0xFFFFFFFF) { big.Add((ulong)size); big.Add((ulong)size); }
            if (offset >= 0xFFFFFFFF) big.Add((ulong)offset);
            var extraLen = big.Count == 0 ? 0 : 4 + 8 * big.Count;
            var h = new byte[46 + nameBytes.Length + extraLen];
            var w = h.AsSpan();
            BinaryPrimitives.WriteUInt32LittleEndian(w, CentralSig);
            BinaryPrimitives.WriteUInt16LittleEndian(w[4..], 45);
            BinaryPrimitives.WriteUInt16LittleEndian(w[6..], (ushort)(big.Count > 0 ? 45 : 20));
            BinaryPrimitives.WriteUInt32LittleEndian(w[16..], crc);
            BinaryPrimitives.WriteUInt32LittleEndian(w[20..], size >= 0xFFFFFFFF ? 0xFFFFFFFF : (uint)size);
            BinaryPrimitives.WriteUInt32LittleEndian(w[24..], size >= 0xFFFFFFFF ? 0xFFFFFFFF : (uint)size);
            BinaryPrimitives.WriteUInt16LittleEndian(w[28..], (ushort)nameBytes.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(w[30..], (ushort)extraLen);
            BinaryPrimitives.WriteUInt32LittleEndian(w[42..], offset >= 0xFFFFFFFF ? 0xFFFFFFFF : (uint)offset);
            nameBytes.CopyTo(h, 46);
            if (big.Count > 0)
            {
                var x = w[(46 + nameBytes.Length)..];
                BinaryPrimitives.WriteUInt16LittleEndian(x, 1);
                BinaryPrimitives.WriteUInt16LittleEndian(x[2..], (ushort)(8 * big.Count));
                for (var i = 0; i < big.Count; i++) BinaryPrimitives.WriteUInt64LittleEndian(x[(4 + 8 * i)..], big[i]);
            }
            s.Write(h);
        }
        var dirSize = s.Position - start;
        var needs64 = records.Count >= 0xFFFF || start >= 0xFFFFFFFF || dirSize >= 0xFFFFFFFF;
        if (needs64)
        {
            var end64 = s.Position;
            var z = new byte[56 + 20];
            var w = z.AsSpan();
            BinaryPrimitives.WriteUInt32LittleEndian(w, End64Sig);
            BinaryPrimitives.WriteUInt64LittleEndian(w[4..], 44);
            BinaryPrimitives.WriteUInt16LittleEndian(w[12..], 45);
            BinaryPrimitives.WriteUInt16LittleEndian(w[14..], 45);
            BinaryPrimitives.WriteUInt64LittleEndian(w[24..], (ulong)records.Count);
            BinaryPrimitives.WriteUInt64LittleEndian(w[32..], (ulong)records.Count);
            BinaryPrimitives.WriteUInt64LittleEndian(w[40..], (ulong)dirSize);
            BinaryPrimitives.WriteUInt64LittleEndian(w[48..], (ulong)start);
            BinaryPrimitives.WriteUInt32LittleEndian(w[56..], Locator64Sig);
            BinaryPrimitives.WriteUInt64LittleEndian(w[64..], (ulong)end64);
            BinaryPrimitives.WriteUInt32LittleEndian(w[72..], 1);
            s.Write(z);
        }
        var e = new byte[22];
        BinaryPrimitives.WriteUInt32LittleEndian(e, EndSig);
        BinaryPrimitives.WriteUInt16LittleEndian(e.AsSpan(8), (ushort)Math.Min(records.Count, 0xFFFF));
        BinaryPrimitives.WriteUInt16LittleEndian(e.AsSpan(10), (ushort)Math.Min(records.Count, 0xFFFF));
        BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(12), needs64 ? 0xFFFFFFFF : (uint)dirSize);
        BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(16), needs64 ? 0xFFFFFFFF : (uint)start);
        s.Write(e);
    }

    /// <summary>
    /// The state dict as torch.save pickles it (protocol 2): an OrderedDict of
    /// <c>torch._utils._rebuild_tensor_v2(persistent storage ('storage', torch.XStorage, 'N', 'cpu', numel), 0, size, stride, False, OrderedDict())</c>,
    /// under <c>{"model": ...}</c> when <paramref name="underModelKey"/>.
    /// </summary>
    internal static byte[] Pickle(IReadOnlyList<TensorSpec> tensors, SynthDType dtype, bool underModelKey)
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
        void Global(string module, string name) { Op((byte)'c'); p.Write(Encoding.ASCII.GetBytes($"{module}\n{name}\n")); }
        void Int(long v)
        {
            if (v is >= 0 and < int.MaxValue)
            {
                Op((byte)'J');
                Span<byte> n = stackalloc byte[4];
                BinaryPrimitives.WriteInt32LittleEndian(n, (int)v);
                p.Write(n);
            }
            else
            {
                Op(0x8a); // LONG1: 8 little-endian bytes
                Op(8);
                Span<byte> n = stackalloc byte[8];
                BinaryPrimitives.WriteInt64LittleEndian(n, v);
                p.Write(n);
            }
        }
        void Tuple(IEnumerable<long> values) { Op((byte)'('); foreach (var v in values) Int(v); Op((byte)'t'); }

        Op(0x80); Op(2); // PROTO 2
        if (underModelKey) { Op((byte)'}'); Str("model"); }
        Global("collections", "OrderedDict"); Op((byte)')'); Op((byte)'R');
        Op((byte)'(');
        for (var i = 0; i < tensors.Count; i++)
        {
            var t = tensors[i];
            Str(t.Key);
            Global("torch._utils", "_rebuild_tensor_v2");
            Op((byte)'(');
            Op((byte)'('); Str("storage"); Global("torch", dtype.TorchStorage()); Str(i.ToString(System.Globalization.CultureInfo.InvariantCulture)); Str("cpu"); Int(t.Elements); Op((byte)'t');
            Op((byte)'Q'); // BINPERSID
            Int(0);
            Tuple(t.Shape);
            var strides = new long[t.Shape.Length];
            for (long k = t.Shape.Length - 1, acc = 1; k >= 0; acc *= t.Shape[k], k--) strides[k] = acc;
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

    /// <summary>CRC-32 (zip's polynomial), slicing by 8.</summary>
    internal sealed class Crc32
    {
        private static readonly uint[] Tables = MakeTables();
        private uint _crc = 0xFFFFFFFF;

        public uint Value => ~_crc;

        public static uint Compute(ReadOnlySpan<byte> data)
        {
            var c = new Crc32();
            c.Append(data);
            return c.Value;
        }

        public void Append(ReadOnlySpan<byte> data)
        {
            var crc = _crc;
            var t = Tables;
            while (data.Length >= 8)
            {
                var one = BinaryPrimitives.ReadUInt32LittleEndian(data) ^ crc;
                var two = BinaryPrimitives.ReadUInt32LittleEndian(data[4..]);
                crc = t[7 * 256 + (one & 0xFF)] ^ t[6 * 256 + ((one >> 8) & 0xFF)] ^ t[5 * 256 + ((one >> 16) & 0xFF)] ^ t[4 * 256 + (one >> 24)]
                    ^ t[3 * 256 + (two & 0xFF)] ^ t[2 * 256 + ((two >> 8) & 0xFF)] ^ t[256 + ((two >> 16) & 0xFF)] ^ t[two >> 24];
                data = data[8..];
            }
            foreach (var b in data) crc = t[(crc ^ b) & 0xFF] ^ (crc >> 8);
            _crc = crc;
        }

        private static uint[] MakeTables()
        {
            var t = new uint[8 * 256];
            for (uint i = 0; i < 256; i++)
            {
                var c = i;
                for (var k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320 ^ (c >> 1) : c >> 1;
                t[i] = c;
            }
            for (var i = 256; i < t.Length; i++) t[i] = t[t[i - 256] & 0xFF] ^ (t[i - 256] >> 8);
            return t;
        }
    }
}
