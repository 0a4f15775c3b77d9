using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using TorchSharp;
using Xunit;

namespace MiniGpt4.Tests.Weights;

/// <summary>
/// Real Vicuna shards are ~10 GB, so torch writes Zip64 archives with records past 4 GB. This builds one
/// by hand (a sparse file: the 4.3 GB hole takes no disk) and checks our central-directory reader.
/// </summary>
public class Zip64Tests
{
    private sealed class Rec(string name, long offset, long size) { public string Name = name; public long Offset = offset; public long Size = size; }

    private static void LocalHeader(Stream s, string name, long size)
    {
        var n = Encoding.ASCII.GetBytes(name);
        var h = new byte[30 + n.Length + 20];
        BinaryPrimitives.WriteUInt32LittleEndian(h, 0x04034b50);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(4), 45);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(18), 0xFFFFFFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(22), 0xFFFFFFFF);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(26), (ushort)n.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(28), 20);
        n.CopyTo(h, 30);
        var x = h.AsSpan(30 + n.Length);
        BinaryPrimitives.WriteUInt16LittleEndian(x, 1);
        BinaryPrimitives.WriteUInt16LittleEndian(x[2..], 16);
        BinaryPrimitives.WriteInt64LittleEndian(x[4..], size);
        BinaryPrimitives.WriteInt64LittleEndian(x[12..], size);
        s.Write(h);
    }

    private static void CentralDirectory(Stream s, List<Rec> recs)
    {
        var start = s.Position;
        foreach (var r in recs)
        {
            var n = Encoding.ASCII.GetBytes(r.Name);
            var h = new byte[46 + n.Length + 28];
            BinaryPrimitives.WriteUInt32LittleEndian(h, 0x02014b50);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(4), 45);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(6), 45);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(20), 0xFFFFFFFF);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(24), 0xFFFFFFFF);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(28), (ushort)n.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(h.AsSpan(30), 28);
            BinaryPrimitives.WriteUInt32LittleEndian(h.AsSpan(42), 0xFFFFFFFF);
            n.CopyTo(h, 46);
            var x = h.AsSpan(46 + n.Length);
            BinaryPrimitives.WriteUInt16LittleEndian(x, 1);
            BinaryPrimitives.WriteUInt16LittleEndian(x[2..], 24);
            BinaryPrimitives.WriteInt64LittleEndian(x[4..], r.Size);
            BinaryPrimitives.WriteInt64LittleEndian(x[12..], r.Size);
            BinaryPrimitives.WriteInt64LittleEndian(x[20..], r.Offset);
            s.Write(h);
        }
        var cdSize = s.Position - start;
        var z64 = s.Position;
        var e = new byte[56 + 20 + 22];
        BinaryPrimitives.WriteUInt32LittleEndian(e, 0x06064b50);
        BinaryPrimitives.WriteInt64LittleEndian(e.AsSpan(4), 44);
        BinaryPrimitives.WriteUInt16LittleEndian(e.AsSpan(12), 45);
        BinaryPrimitives.WriteUInt16LittleEndian(e.AsSpan(14), 45);
        BinaryPrimitives.WriteInt64LittleEndian(e.AsSpan(24), recs.Count);
        BinaryPrimitives.WriteInt64LittleEndian(e.AsSpan(32), recs.Count);
        BinaryPrimitives.WriteInt64LittleEndian(e.AsSpan(40), cdSize);
        BinaryPrimitives.WriteInt64LittleEndian(e.AsSpan(48), start);
        BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(56), 0x07064b50);
        BinaryPrimitives.WriteInt64LittleEndian(e.AsSpan(64), z64);
        BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(72), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(76), 0x06054b50);
        BinaryPrimitives.WriteUInt16LittleEndian(e.AsSpan(84), 0xFFFF);
        BinaryPrimitives.WriteUInt16LittleEndian(e.AsSpan(86), 0xFFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(88), 0xFFFFFFFF);
        BinaryPrimitives.WriteUInt32LittleEndian(e.AsSpan(92), 0xFFFFFFFF);
        s.Write(e);
    }

    [Fact]
    public void Records_beyond_4GB_are_found_through_zip64_extra_fields()
    {
        using var dir = new TempDir();
        var path = dir.File("shard.bin");
        // Pickle: {'w': tensor over storage '1' (4 floats)}; storage '0' is an unreferenced 4.3 GB record.
        var pickleDir = new TempDir();
        var tmp = pickleDir.File("p.pth");
        using var values = torch.tensor(new float[] { 1.5f, -2f, 3.25f, 1e-3f });
        TorchZipWriter.Write(tmp, new SortedList<string, object?> { ["w"] = new PickledTensor("1", 0, [2, 2], [2, 1]) }, new() { ["1"] = values }, stem: "shard");
        byte[] pickle;
        using (var z = ZipFile.OpenRead(tmp)) { using var st = z.GetEntry("shard/data.pkl")!.Open(); var ms = new MemoryStream(); st.CopyTo(ms); pickle = ms.ToArray(); }
        pickleDir.Dispose();

        const long hole = (1L << 32) + (300L << 20);
        var recs = new List<Rec>();
        using (var fs = new FileStream(path, FileMode.Create, FileAccess.ReadWrite))
        {
            recs.Add(new Rec("shard/data.pkl", fs.Position, pickle.Length)); LocalHeader(fs, "shard/data.pkl", pickle.Length); fs.Write(pickle);
            recs.Add(new Rec("shard/data/0", fs.Position, hole)); LocalHeader(fs, "shard/data/0", hole);
            fs.Seek(hole, SeekOrigin.Current); // sparse
            recs.Add(new Rec("shard/data/1", fs.Position, 16)); LocalHeader(fs, "shard/data/1", 16); fs.Write(values.bytes);
            CentralDirectory(fs, recs);
        }
        // .NET's own reader agrees the archive is a valid Zip64 one.
        using (var z = ZipFile.OpenRead(path))
            Assert.Equal(hole, z.GetEntry("shard/data/0")!.Length);

        using var s = (MappedWeightSource)WeightFiles.Open(path);
        Assert.True(s.LocationOf("w").Offset > 1L << 32);
        using var w = s.Load("w");
        using var expected = values.reshape(2, 2);
        TensorAssert.Equal(expected, w);
        using var bf = s.Load("w", torch.ScalarType.BFloat16);
        using var expectedBf = expected.to(torch.ScalarType.BFloat16);
        TensorAssert.Equal(expectedBf, bf);
    }
}
