using System.Buffers.Binary;

namespace MiniGpt4.Imaging;

/// <summary>The container formats the inspector recognises from their first bytes.</summary>
internal enum EncodedImageFormat { Unknown, Jpeg, Png, Gif, Bmp, WebP, Tiff }

/// <summary>What the header of an encoded image declares.</summary>
internal readonly record struct EncodedImageHeader(EncodedImageFormat Format, long Width, long Height);

/// <summary>
/// Checks encoded image bytes before any decoder sees them, the same way for every decoder:
/// <list type="number">
/// <item>the format is recognised from the content (magic bytes), never from a file name;</item>
/// <item>GIF and TIFF are refused unless the options allow them;</item>
/// <item>the declared width and height are read from the header and refused when zero or over
/// <see cref="ImageDecodingOptions.MaxPixels"/> or <see cref="ImageDecodingOptions.MaxDimension"/> by
/// <see cref="ImageLimits"/> (decompression bombs are refused before decoding);</item>
/// <item>the container structure is walked and every part it declares must be present: a JPEG's
/// marker segments and entropy-coded data up to the EOI marker, a PNG's chunks up to IEND, a GIF's
/// blocks up to the end of the first image, the pixel array a BMP's header implies, the RIFF size of
/// a WebP and its chunks, the strips or tiles of a TIFF's first page. Data after that end is ignored.
/// This is what makes truncated files an error: ImageSharp decodes a truncated JPEG silently
/// (grey rows), while PIL refuses it ("image file is truncated").</item>
/// </list>
/// The walk reads only lengths and markers; CRCs and compressed data are left to the decoder.
/// </summary>
internal static class EncodedImageInspector
{
    /// <summary>Recognises the container from the first bytes.</summary>
    public static EncodedImageFormat Sniff(ReadOnlySpan<byte> d)
    {
        if (d.Length >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return EncodedImageFormat.Jpeg;
        if (d.Length >= 8 && d[..8].SequenceEqual(PngSignature)) return EncodedImageFormat.Png;
        if (d.Length >= 6 && (d[..6].SequenceEqual("GIF87a"u8) || d[..6].SequenceEqual("GIF89a"u8))) return EncodedImageFormat.Gif;
        if (d.Length >= 2 && d[0] == (byte)'B' && d[1] == (byte)'M') return EncodedImageFormat.Bmp;
        if (d.Length >= 12 && d[..4].SequenceEqual("RIFF"u8) && d.Slice(8, 4).SequenceEqual("WEBP"u8)) return EncodedImageFormat.WebP;
        if (d.Length >= 4 && ((d[0] == (byte)'I' && d[1] == (byte)'I' && (d[2] == 42 || d[2] == 43) && d[3] == 0)
                              || (d[0] == (byte)'M' && d[1] == (byte)'M' && d[2] == 0 && (d[3] == 42 || d[3] == 43))))
            return EncodedImageFormat.Tiff;
        return EncodedImageFormat.Unknown;
    }

    private static ReadOnlySpan<byte> PngSignature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    /// <summary>Display name of a format.</summary>
    public static string Name(EncodedImageFormat f) => f switch
    {
        EncodedImageFormat.Jpeg => "JPEG",
        EncodedImageFormat.Png => "PNG",
        EncodedImageFormat.Gif => "GIF",
        EncodedImageFormat.Bmp => "BMP",
        EncodedImageFormat.WebP => "WebP",
        EncodedImageFormat.Tiff => "TIFF",
        _ => "unknown",
    };

    /// <summary>Runs all checks; throws <see cref="MiniGptImageException"/> naming the first problem.</summary>
    /// <param name="data">The encoded image, or its first bytes when <paramref name="prefixOnly"/>.</param>
    /// <param name="options">The limits.</param>
    /// <param name="prefixOnly">The data is only the start of the image: running out of it is not an error,
    /// and the size is -1 x -1 when it ends before the size fields.</param>
    public static EncodedImageHeader Inspect(ReadOnlySpan<byte> data, ImageDecodingOptions options, bool prefixOnly = false)
    {
        if (data.IsEmpty) throw new MiniGptImageException("The image is empty (0 bytes).");
        var format = Sniff(data);
        switch (format)
        {
            case EncodedImageFormat.Unknown:
                throw new MiniGptImageException(
                    $"Not a supported image: the data ({data.Length} bytes, starting {Hex(data)}) is not JPEG, PNG, WebP or BMP " +
                    "(GIF and TIFF only when ImageDecodingOptions allows them).");
            case EncodedImageFormat.Gif when !options.AllowGif:
                throw new MiniGptImageException(
                    "GIF images are refused by default (ImageSharp 2.1's GIF decoder had several security advisories); " +
                    "set ImageDecodingOptions.AllowGif = true to accept them (the first frame is used).");
            case EncodedImageFormat.Tiff when !options.AllowTiff:
                throw new MiniGptImageException(
                    "TIFF images are refused by default (an out-of-bounds write in ImageSharp's TIFF decoder was fixed only after 2.1); " +
                    "set ImageDecodingOptions.AllowTiff = true to accept them (the first page is used).");
        }

        var walk = format switch
        {
            EncodedImageFormat.Jpeg => WalkJpeg(data),
            EncodedImageFormat.Png => WalkPng(data),
            EncodedImageFormat.Gif => WalkGif(data),
            EncodedImageFormat.Bmp => WalkBmp(data),
            EncodedImageFormat.WebP => WalkWebP(data),
            _ => WalkTiff(data),
        };
        string name = Name(format);
        if (prefixOnly && walk.Truncated && (walk.Width <= 0 || walk.Height <= 0))
            return new EncodedImageHeader(format, -1, -1);
        if (walk.Width < 0 || walk.Height < 0)
            throw new MiniGptImageException($"{(walk.Truncated ? "Truncated" : "Invalid")} {name} image: {walk.Problem ?? "no size in the header"}.");
        if (walk.Width == 0 || walk.Height == 0)
            throw new MiniGptImageException($"Invalid {name} image: its header declares an empty size {walk.Width}x{walk.Height}.");
        ImageLimits.CheckSize(name, walk.Width, walk.Height, options, frames: walk.Frames);
        if (walk.Problem is not null && !(prefixOnly && walk.Truncated))
            throw new MiniGptImageException($"{(walk.Truncated ? "Truncated" : "Invalid")} {name} image: {walk.Problem}.");
        return new EncodedImageHeader(format, walk.Width, walk.Height);
    }

    private static string Hex(ReadOnlySpan<byte> d) => Convert.ToHexString(d[..Math.Min(8, d.Length)]);

    /// <summary>Declared size (-1 when unknown) and the first structural problem (null when complete).</summary>
    private readonly record struct Walk(long Width, long Height, string? Problem, bool Truncated, long Frames = 1)
    {
        public static Walk Ok(long w, long h) => new(w, h, null, false);
        public static Walk Cut(long w, long h, string problem) => new(w, h, problem, true);
        public static Walk Bad(long w, long h, string problem) => new(w, h, problem, false);
    }

    // ---------------------------------------------------------------- JPEG
    private static Walk WalkJpeg(ReadOnlySpan<byte> d)
    {
        long w = -1, h = -1;
        bool sawScan = false;
        int pos = 2;
        while (true)
        {
            if (pos >= d.Length) return Walk.Cut(w, h, $"the data ends after {d.Length} bytes without the end-of-image marker (FFD9)");
            if (d[pos] != 0xFF)
            {
                // libjpeg skips extraneous bytes before a marker (with a warning); so do we.
                int next = d[pos..].IndexOf((byte)0xFF);
                if (next < 0) return Walk.Cut(w, h, $"the data ends after {d.Length} bytes without the end-of-image marker (FFD9)");
                pos += next;
            }
            while (pos < d.Length && d[pos] == 0xFF) pos++;
            if (pos >= d.Length) return Walk.Cut(w, h, "the data ends inside a marker");
            int marker = d[pos++];
            if (marker == 0xD9)
                return sawScan ? Walk.Ok(w, h) : Walk.Bad(w, h, "the end-of-image marker comes before any image data");
            if (marker == 0x00 || marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) continue; // no length field
            if (marker == 0xD8) return Walk.Bad(w, h, "a second start-of-image marker");
            if (pos + 2 > d.Length) return Walk.Cut(w, h, $"the data ends inside the length of marker FF{marker:X2}");
            int len = BinaryPrimitives.ReadUInt16BigEndian(d[pos..]);
            if (len < 2) return Walk.Bad(w, h, $"marker FF{marker:X2} at byte {pos - 2} has an invalid length {len}");
            if (pos + len > d.Length)
                return Walk.Cut(w, h, $"marker segment FF{marker:X2} at byte {pos - 2} declares {len} bytes but only {d.Length - pos} remain");
            bool isFrame = marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC;
            if (isFrame)
            {
                if (len < 8) return Walk.Bad(w, h, $"frame header FF{marker:X2} is too short ({len} bytes)");
                h = BinaryPrimitives.ReadUInt16BigEndian(d[(pos + 3)..]);
                w = BinaryPrimitives.ReadUInt16BigEndian(d[(pos + 5)..]);
            }
            pos += len;
            if (marker != 0xDA) continue;

            if (w < 0) return Walk.Bad(w, h, "a scan comes before the frame header");
            sawScan = true;
            // Entropy-coded data: 0xFF is always followed by 00 (stuffing) or a restart marker inside it,
            // so the next other marker ends the scan.
            while (true)
            {
                int ff = d[pos..].IndexOf((byte)0xFF);
                if (ff < 0 || pos + ff + 1 >= d.Length)
                    return Walk.Cut(w, h, $"the data ends inside the compressed image data after {d.Length} bytes, without the end-of-image marker (FFD9)");
                int b = d[pos + ff + 1];
                if (b == 0x00 || (b >= 0xD0 && b <= 0xD7)) { pos += ff + 2; continue; }
                if (b == 0xFF) { pos += ff + 1; continue; }
                pos += ff;
                break;
            }
        }
    }

    // ---------------------------------------------------------------- PNG
    private static Walk WalkPng(ReadOnlySpan<byte> d)
    {
        long w = -1, h = -1;
        bool first = true, sawData = false;
        int pos = 8;
        while (true)
        {
            if (pos == d.Length) return Walk.Cut(w, h, $"the data ends after {d.Length} bytes without the IEND chunk");
            if (pos + 8 > d.Length) return Walk.Cut(w, h, $"the data ends inside a chunk header at byte {pos}");
            uint len = BinaryPrimitives.ReadUInt32BigEndian(d[pos..]);
            var type = d.Slice(pos + 4, 4);
            string typeName = System.Text.Encoding.ASCII.GetString(type);
            if (len > int.MaxValue) return Walk.Bad(w, h, $"chunk '{typeName}' at byte {pos} declares an invalid length {len}");
            if (first)
            {
                if (!type.SequenceEqual("IHDR"u8) || len < 13 || pos + 8 + 13 > d.Length)
                    return pos + 8 + 13 > d.Length && type.SequenceEqual("IHDR"u8)
                        ? Walk.Cut(w, h, "the data ends inside the IHDR header")
                        : Walk.Bad(w, h, "the first chunk is not a valid IHDR header");
                w = BinaryPrimitives.ReadUInt32BigEndian(d[(pos + 8)..]);
                h = BinaryPrimitives.ReadUInt32BigEndian(d[(pos + 12)..]);
                first = false;
            }
            if ((long)pos + 12 + len > d.Length)
                return Walk.Cut(w, h, $"chunk '{typeName}' at byte {pos} declares {len} data bytes but only {Math.Max(0, d.Length - pos - 12)} remain");
            if (type.SequenceEqual("IDAT"u8)) sawData = true;
            if (type.SequenceEqual("IEND"u8))
                return sawData ? Walk.Ok(w, h) : Walk.Bad(w, h, "IEND comes before any IDAT image data");
            pos += 12 + (int)len;
        }
    }

    // ---------------------------------------------------------------- GIF (first image only)
    private static Walk WalkGif(ReadOnlySpan<byte> d)
    {
        if (d.Length < 13) return Walk.Cut(-1, -1, "the data ends inside the logical screen descriptor");
        long w = BinaryPrimitives.ReadUInt16LittleEndian(d[6..]);
        long h = BinaryPrimitives.ReadUInt16LittleEndian(d[8..]);
        int flags = d[10];
        int pos = 13 + ((flags & 0x80) != 0 ? 3 << ((flags & 7) + 1) : 0);
        while (true)
        {
            if (pos >= d.Length) return Walk.Cut(w, h, $"the data ends after {d.Length} bytes before the first image is complete");
            int block = d[pos];
            if (block == 0x3B) return Walk.Bad(w, h, "the file ends (trailer) before any image");
            if (block == 0x21)
            {
                if (pos + 2 > d.Length) return Walk.Cut(w, h, "the data ends inside an extension block");
                pos += 2;
                if (!SkipSubBlocks(d, ref pos)) return Walk.Cut(w, h, "the data ends inside an extension block");
                continue;
            }
            if (block != 0x2C) return Walk.Bad(w, h, $"unexpected block 0x{block:X2} at byte {pos}");
            if (pos + 10 > d.Length) return Walk.Cut(w, h, "the data ends inside the image descriptor");
            long left = BinaryPrimitives.ReadUInt16LittleEndian(d[(pos + 1)..]);
            long top = BinaryPrimitives.ReadUInt16LittleEndian(d[(pos + 3)..]);
            long fw = BinaryPrimitives.ReadUInt16LittleEndian(d[(pos + 5)..]);
            long fh = BinaryPrimitives.ReadUInt16LittleEndian(d[(pos + 7)..]);
            int imageFlags = d[pos + 9];
            w = Math.Max(w, left + fw);
            h = Math.Max(h, top + fh);
            pos += 10 + ((imageFlags & 0x80) != 0 ? 3 << ((imageFlags & 7) + 1) : 0);
            pos += 1; // LZW minimum code size
            if (pos > d.Length || !SkipSubBlocks(d, ref pos))
                return Walk.Cut(w, h, $"the data ends after {d.Length} bytes inside the first image's data");
            return Walk.Ok(w, h);
        }
    }

    private static bool SkipSubBlocks(ReadOnlySpan<byte> d, ref int pos)
    {
        while (true)
        {
            if (pos >= d.Length) return false;
            int size = d[pos];
            pos += 1 + size;
            if (size == 0) return true;
        }
    }

    // ---------------------------------------------------------------- BMP
    private static Walk WalkBmp(ReadOnlySpan<byte> d)
    {
        if (d.Length < 18) return Walk.Cut(-1, -1, "the data ends inside the file header");
        long offBits = BinaryPrimitives.ReadUInt32LittleEndian(d[10..]);
        long dib = BinaryPrimitives.ReadUInt32LittleEndian(d[14..]);
        long w, h;
        int bpp;
        long compression = 0;
        if (dib == 12)
        {
            if (d.Length < 26) return Walk.Cut(-1, -1, "the data ends inside the bitmap header");
            w = BinaryPrimitives.ReadUInt16LittleEndian(d[18..]);
            h = BinaryPrimitives.ReadUInt16LittleEndian(d[20..]);
            bpp = BinaryPrimitives.ReadUInt16LittleEndian(d[24..]);
        }
        else if (dib >= 16)
        {
            if (d.Length < 14 + Math.Min(dib, 40)) return Walk.Cut(-1, -1, "the data ends inside the bitmap header");
            int sw = BinaryPrimitives.ReadInt32LittleEndian(d[18..]);
            int sh = BinaryPrimitives.ReadInt32LittleEndian(d[22..]);
            if (sw < 0) return Walk.Bad(-1, -1, $"negative width {sw}");
            w = sw;
            h = Math.Abs((long)sh); // negative height = rows stored top-down
            bpp = BinaryPrimitives.ReadUInt16LittleEndian(d[28..]);
            if (dib >= 20) compression = BinaryPrimitives.ReadUInt32LittleEndian(d[30..]);
        }
        else return Walk.Bad(-1, -1, $"unknown bitmap header size {dib}");

        if (offBits >= d.Length) return Walk.Cut(w, h, $"the pixel data offset {offBits} is past the end of the data ({d.Length} bytes)");
        bool uncompressed = compression is 0 or 3 or 6;
        if (uncompressed && bpp is 1 or 2 or 4 or 8 or 16 or 24 or 32)
        {
            long rowBytes = (w * bpp + 31) / 32 * 4;
            long need = offBits + rowBytes * h;
            if (need > d.Length)
                return Walk.Cut(w, h, $"{w}x{h} pixels at {bpp} bits need {need} bytes but the data has {d.Length}");
        }
        return Walk.Ok(w, h);
    }

    // ---------------------------------------------------------------- WebP
    private static Walk WalkWebP(ReadOnlySpan<byte> d)
    {
        long riff = BinaryPrimitives.ReadUInt32LittleEndian(d[4..]);
        long end = 8 + riff;
        long w = -1, h = -1;
        bool sawImage = false;
        long frames = 0;
        // Sizes come from the first chunk; the RIFF length is checked after it so that a bomb header is
        // reported as such.
        string? cut = end > d.Length ? $"the RIFF header declares {end} bytes but the data has {d.Length}" : null;
        long limit = Math.Min(end, d.Length);
        long pos = 12;
        while (pos + 8 <= limit)
        {
            var fourcc = d.Slice((int)pos, 4);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(d[(int)(pos + 4)..]);
            long payload = pos + 8;
            long avail = d.Length - payload;
            if (w < 0)
            {
                if (fourcc.SequenceEqual("VP8X"u8) && avail >= 10)
                {
                    w = 1 + (d[(int)payload + 4] | (d[(int)payload + 5] << 8) | (d[(int)payload + 6] << 16));
                    h = 1 + (d[(int)payload + 7] | (d[(int)payload + 8] << 8) | (d[(int)payload + 9] << 16));
                }
                else if (fourcc.SequenceEqual("VP8 "u8) && avail >= 10)
                {
                    if (d[(int)payload + 3] != 0x9D || d[(int)payload + 4] != 0x01 || d[(int)payload + 5] != 0x2A)
                        return Walk.Bad(w, h, "the VP8 frame has no start code");
                    w = BinaryPrimitives.ReadUInt16LittleEndian(d[(int)(payload + 6)..]) & 0x3FFF;
                    h = BinaryPrimitives.ReadUInt16LittleEndian(d[(int)(payload + 8)..]) & 0x3FFF;
                }
                else if (fourcc.SequenceEqual("VP8L"u8) && avail >= 5)
                {
                    if (d[(int)payload] != 0x2F) return Walk.Bad(w, h, "the VP8L bitstream has no signature");
                    uint bits = BinaryPrimitives.ReadUInt32LittleEndian(d[(int)(payload + 1)..]);
                    w = 1 + (bits & 0x3FFF);
                    h = 1 + ((bits >> 14) & 0x3FFF);
                }
            }
            if (fourcc.SequenceEqual("VP8 "u8) || fourcc.SequenceEqual("VP8L"u8) || fourcc.SequenceEqual("ANMF"u8)) sawImage = true;
            if (fourcc.SequenceEqual("ANMF"u8)) frames++;
            if (payload + size > end)
                return Walk.Cut(w, h, $"chunk '{System.Text.Encoding.ASCII.GetString(fourcc)}' declares {size} bytes past the end of the RIFF data");
            pos = payload + size + (size & 1);
        }
        if (cut is not null) return Walk.Cut(w, h, cut);
        if (w < 0) return Walk.Bad(w, h, "no VP8, VP8L or VP8X chunk gives the image size");
        return sawImage ? Walk.Ok(w, h) with { Frames = Math.Max(1, frames) } : Walk.Bad(w, h, "no image data chunk (VP8, VP8L or ANMF)");
    }

    // ---------------------------------------------------------------- TIFF (first page)
    private static ulong U(ReadOnlySpan<byte> d, bool le, int at, int size)
    {
        var s = d.Slice(at, size);
        return size switch
        {
            1 => s[0],
            2 => le ? BinaryPrimitives.ReadUInt16LittleEndian(s) : BinaryPrimitives.ReadUInt16BigEndian(s),
            4 => le ? BinaryPrimitives.ReadUInt32LittleEndian(s) : BinaryPrimitives.ReadUInt32BigEndian(s),
            _ => le ? BinaryPrimitives.ReadUInt64LittleEndian(s) : BinaryPrimitives.ReadUInt64BigEndian(s),
        };
    }

    private static Walk WalkTiff(ReadOnlySpan<byte> d)
    {
        bool le = d[0] == (byte)'I';
        bool big = (le ? d[2] : d[3]) == 43;
        int headerLen = big ? 16 : 8;
        if (d.Length < headerLen) return Walk.Cut(-1, -1, "the data ends inside the header");
        ulong ifd = big ? U(d, le, 8, 8) : U(d, le, 4, 4);
        int countSize = big ? 8 : 2, entrySize = big ? 20 : 12, fieldSize = big ? 8 : 4;
        // Written so that a BigTIFF offset near 2^64 cannot wrap around (ifd + countSize overflowed, then Slice(-8) threw).
        if (ifd < (ulong)headerLen || ifd > (ulong)d.Length || (ulong)countSize > (ulong)d.Length - ifd)
            return Walk.Cut(-1, -1, $"the first directory at byte {ifd} is past the end of the data ({d.Length} bytes)");
        ulong entries = U(d, le, (int)ifd, countSize);
        ulong entriesEnd = ifd + (ulong)countSize + entries * (ulong)entrySize;
        if (entries > 65535 || entriesEnd > (ulong)d.Length)
            return Walk.Cut(-1, -1, $"the first directory declares {entries} entries past the end of the data");

        long w = -1, h = -1;
        ulong[]? offsets = null, counts = null;
        for (ulong i = 0; i < entries; i++)
        {
            int e = (int)(ifd + (ulong)countSize + i * (ulong)entrySize);
            int tag = (int)U(d, le, e, 2), type = (int)U(d, le, e + 2, 2);
            ulong n = U(d, le, e + 4, big ? 8 : 4);
            int vsize = type switch { 3 => 2, 4 => 4, 16 => 8, _ => 0 };
            if (vsize == 0 || tag is not (256 or 257 or 273 or 279 or 322 or 323 or 324 or 325)) continue;
            if (n > int.MaxValue / 8) return Walk.Bad(w, h, $"tag {tag} declares {n} values");
            ulong bytes = n * (ulong)vsize;
            ulong at = bytes <= (ulong)fieldSize ? (ulong)(e + 4 + (big ? 8 : 4)) : U(d, le, e + 4 + (big ? 8 : 4), fieldSize);
            if (at > (ulong)d.Length || bytes > (ulong)d.Length - at)
                return Walk.Cut(w, h, $"the values of tag {tag} lie past the end of the data");
            var values = new ulong[n];
            for (ulong k = 0; k < n; k++) values[k] = U(d, le, (int)(at + k * (ulong)vsize), vsize);
            switch (tag)
            {
                case 256 when n > 0: w = (long)Math.Min(values[0], int.MaxValue * 2UL); break;
                case 257 when n > 0: h = (long)Math.Min(values[0], int.MaxValue * 2UL); break;
                case 273 or 324: offsets = values; break;
                case 279 or 325: counts = values; break;
            }
        }
        if (w < 0 || h < 0) return Walk.Bad(w, h, "the first directory has no image width or length");
        if (offsets is null || counts is null || offsets.Length != counts.Length || offsets.Length == 0)
            return Walk.Bad(w, h, "the first directory has no consistent strip or tile offsets and byte counts");
        for (int i = 0; i < offsets.Length; i++)
            if (offsets[i] > (ulong)d.Length || counts[i] > (ulong)d.Length - offsets[i])
                return Walk.Cut(w, h, $"strip/tile {i} ({counts[i]} bytes at byte {offsets[i]}) extends past the end of the data ({d.Length} bytes)");
        return Walk.Ok(w, h);
    }
}
