using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace MiniGpt4.Weights;

/// <summary>One record of a zip archive: where its (stored) data starts in the file and how long it is.</summary>
internal sealed record ZipRecord(string Name, int Method, long CompressedSize, long Size, long DataOffset);

/// <summary>
/// Reads the central directory of a zip archive (with Zip64) so records can be read or memory-mapped
/// in place. PyTorch writes its archives with every record stored (uncompressed) and aligned to 64
/// bytes, so tensor storages are plain byte ranges of the file. (System.IO.Compression does not
/// expose a record's offset, hence this small reader; it validates every offset against the file.)
/// </summary>
internal static class ZipDirectory
{
    private const uint EocdSignature = 0x06054b50, Zip64LocatorSignature = 0x07064b50, Zip64EocdSignature = 0x06064b50;
    private const uint CentralSignature = 0x02014b50, LocalSignature = 0x04034b50;
    private const long MaxDirectoryBytes = 256L << 20;

    /// <summary>True when the file starts like a zip archive ("PK\x03\x04").</summary>
    public static bool LooksLikeZip(string path)
    {
        Span<byte> sig = stackalloc byte[4];
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
        return fs.Read(sig) == 4 && BinaryPrimitives.ReadUInt32LittleEndian(sig) == LocalSignature;
    }

    /// <summary>All records of <paramref name="path"/>, by name.</summary>
    public static Dictionary<string, ZipRecord> Read(string path)
    {
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096);
        var length = fs.Length;
        byte[] ReadAt(long position, long count)
        {
            var bytes = new byte[count];
            fs.Position = position;
            fs.ReadExactly(bytes);
            return bytes;
        }
        if (length < 22) throw Bad(path, "file too short to be a zip archive");
        // End of central directory: last 22 bytes plus up to 64 KB of comment.
        var tailStart = Math.Max(0, length - 22 - 0xFFFF);
        var tail = ReadAt(tailStart, length - tailStart);
        var eocd = tail.Length - 22;
        while (eocd >= 0 && BinaryPrimitives.ReadUInt32LittleEndian(tail.AsSpan(eocd)) != EocdSignature) eocd--;
        if (eocd < 0) throw Bad(path, "no zip end-of-central-directory record (truncated or not a torch zip file)");
        var e = tail.AsSpan(eocd);
        long entries = BinaryPrimitives.ReadUInt16LittleEndian(e[10..]);
        long dirSize = BinaryPrimitives.ReadUInt32LittleEndian(e[12..]);
        long dirOffset = BinaryPrimitives.ReadUInt32LittleEndian(e[16..]);
        if (entries == 0xFFFF || dirSize == 0xFFFFFFFF || dirOffset == 0xFFFFFFFF)
        {
            var locator = tailStart + eocd - 20;
            if (locator < 0 || BinaryPrimitives.ReadUInt32LittleEndian(ReadAt(locator, 20)) != Zip64LocatorSignature) throw Bad(path, "Zip64 locator missing");
            var z64Pos = (long)BinaryPrimitives.ReadUInt64LittleEndian(ReadAt(locator + 8, 8));
            if (z64Pos < 0 || z64Pos > length - 56) throw Bad(path, "Zip64 end record lies outside the file");
            var z = ReadAt(z64Pos, 56);
            if (BinaryPrimitives.ReadUInt32LittleEndian(z) != Zip64EocdSignature) throw Bad(path, "Zip64 end record missing");
            entries = (long)BinaryPrimitives.ReadUInt64LittleEndian(z.AsSpan(32));
            dirSize = (long)BinaryPrimitives.ReadUInt64LittleEndian(z.AsSpan(40));
            dirOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(z.AsSpan(48));
        }
        if (dirSize < 0 || dirOffset < 0 || dirSize > MaxDirectoryBytes || dirOffset > length || dirSize > length - dirOffset)
            throw Bad(path, $"central directory [{dirOffset}, +{dirSize}] lies outside the {length}-byte file (truncated?)");
        var dir = ReadAt(dirOffset, dirSize);

        var records = new Dictionary<string, ZipRecord>(StringComparer.Ordinal);
        var p = 0;
        for (long n = 0; n < entries; n++)
        {
            if (p + 46 > dir.Length || BinaryPrimitives.ReadUInt32LittleEndian(dir.AsSpan(p)) != CentralSignature)
                throw Bad(path, $"central directory entry {n} is corrupt");
            var c = dir.AsSpan(p);
            int method = BinaryPrimitives.ReadUInt16LittleEndian(c[10..]);
            long comp = BinaryPrimitives.ReadUInt32LittleEndian(c[20..]);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(c[24..]);
            int nameLen = BinaryPrimitives.ReadUInt16LittleEndian(c[28..]);
            int extraLen = BinaryPrimitives.ReadUInt16LittleEndian(c[30..]);
            int commentLen = BinaryPrimitives.ReadUInt16LittleEndian(c[32..]);
            long local = BinaryPrimitives.ReadUInt32LittleEndian(c[42..]);
            p += 46 + nameLen + extraLen + commentLen;
            if (p > dir.Length) throw Bad(path, $"central directory entry {n} is corrupt");
            var name = Encoding.UTF8.GetString(c.Slice(46, nameLen));
            ReadZip64Extra(c.Slice(46 + nameLen, extraLen), ref size, ref comp, ref local);

            if (local < 0 || local > length - 30) throw Bad(path, $"record '{name}' starts outside the file (truncated?)");
            var header = ReadAt(local, 30);
            if (BinaryPrimitives.ReadUInt32LittleEndian(header) != LocalSignature) throw Bad(path, $"record '{name}' has no local header (corrupt archive)");
            var dataOffset = local + 30 + BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(26)) + BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(28));
            if (comp < 0 || size < 0 || dataOffset > length || comp > length - dataOffset)
                throw Bad(path, $"record '{name}' ({comp} bytes at {dataOffset}) extends beyond the end of the {length}-byte file (truncated?)");
            if (method == 0 && comp != size) throw Bad(path, $"stored record '{name}' has compressed size {comp} != size {size}");
            records[name] = new ZipRecord(name, method, comp, size, dataOffset);
        }
        return records;
    }

    /// <summary>Zip64 extended information (extra field 1): the 64-bit values of the fields whose 32-bit value is 0xFFFFFFFF, in this order.</summary>
    private static void ReadZip64Extra(ReadOnlySpan<byte> extra, ref long size, ref long comp, ref long local)
    {
        for (var x = 0; x + 4 <= extra.Length;)
        {
            int id = BinaryPrimitives.ReadUInt16LittleEndian(extra[x..]);
            int len = BinaryPrimitives.ReadUInt16LittleEndian(extra[(x + 2)..]);
            if (x + 4 + len > extra.Length) return;
            var f = extra.Slice(x + 4, len);
            x += 4 + len;
            if (id != 1) continue;
            var q = 0;
            if (size == 0xFFFFFFFF && q + 8 <= f.Length) { size = (long)BinaryPrimitives.ReadUInt64LittleEndian(f[q..]); q += 8; }
            if (comp == 0xFFFFFFFF && q + 8 <= f.Length) { comp = (long)BinaryPrimitives.ReadUInt64LittleEndian(f[q..]); q += 8; }
            if (local == 0xFFFFFFFF && q + 8 <= f.Length) local = (long)BinaryPrimitives.ReadUInt64LittleEndian(f[q..]);
        }
    }

    /// <summary>The whole content of a small record (stored or deflated), capped at <paramref name="maxBytes"/>.</summary>
    public static byte[] ReadSmall(string path, ZipRecord r, long maxBytes)
    {
        if (r.Size > maxBytes || r.CompressedSize > maxBytes)
            throw Bad(path, $"record '{r.Name}' is {Math.Max(r.Size, r.CompressedSize)} bytes, over the {maxBytes}-byte limit");
        if (r.Method is not (0 or 8)) throw Bad(path, $"record '{r.Name}' uses zip compression method {r.Method}; only stored and deflate are supported");
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 4096);
        fs.Position = r.DataOffset;
        var raw = new byte[r.CompressedSize];
        fs.ReadExactly(raw);
        if (r.Method == 0) return raw;
        try
        {
            using var inflate = new DeflateStream(new MemoryStream(raw), CompressionMode.Decompress);
            var result = new byte[r.Size];
            inflate.ReadExactly(result);
            return result;
        }
        catch (Exception ex) when (ex is InvalidDataException or EndOfStreamException)
        {
            throw new MiniGptWeightsException($"{path}: record '{r.Name}' does not inflate: {ex.Message}", path, null, ex);
        }
    }

    private static MiniGptWeightsException Bad(string path, string message) => new($"{path}: {message}", path);
}
