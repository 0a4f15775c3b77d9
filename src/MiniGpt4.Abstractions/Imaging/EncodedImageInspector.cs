using static System.Buffers.Binary.BinaryPrimitives;

namespace MiniGpt4.Imaging;

/// <summary>The container formats the inspector recognises from their first bytes.</summary>
internal enum EncodedImageFormat { Unknown, Jpeg, Png, Gif, Bmp, WebP, Tiff }

/// <summary>What the header of an encoded image declares.</summary>
internal readonly record struct EncodedImageHeader(EncodedImageFormat Format, long Width, long Height);

/// <summary>
/// Checks encoded image bytes before any decoder sees them, the same way for every decoder: the format
/// from the content (magic bytes, never a file name), GIF and TIFF only when allowed, the size the
/// header declares against <see cref="ImageLimits"/> (decompression bombs are refused before decoding),
/// and that every part the container's structure declares is present up to its end (JPEG EOI, PNG
/// IEND, the first GIF image, a BMP's pixel array, WebP's RIFF chunks, the first TIFF page's strips).
/// A truncated file is thus an error, as in PIL, where ImageSharp would decode grey rows. Only lengths
/// and markers are read; CRCs and compressed data are left to the decoder (docs/imaging.md).
/// </summary>
internal static class EncodedImageInspector
{
    /// <summary>Recognises the container from the first bytes.</summary>
    public static EncodedImageFormat Sniff(ReadOnlySpan<byte> d)
    {
        if (d.Length >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) return EncodedImageFormat.Jpeg;
        if (d.StartsWith((ReadOnlySpan<byte>)[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A])) return EncodedImageFormat.Png;
        if (d.StartsWith("GIF87a"u8) || d.StartsWith("GIF89a"u8)) return EncodedImageFormat.Gif;
        if (d.StartsWith("BM"u8)) return EncodedImageFormat.Bmp;
        if (d.Length >= 12 && d.StartsWith("RIFF"u8) && d.Slice(8, 4).SequenceEqual("WEBP"u8)) return EncodedImageFormat.WebP;
        if (d.StartsWith("II*\0"u8) || d.StartsWith("II+\0"u8) || d.StartsWith("MM\0*"u8) || d.StartsWith("MM\0+"u8))
            return EncodedImageFormat.Tiff;
        return EncodedImageFormat.Unknown;
    }

    public static string Name(EncodedImageFormat f) => f == EncodedImageFormat.WebP ? "WebP" : f.ToString().ToUpperInvariant();

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
                    $"Not a supported image: the data ({data.Length} bytes, starting {Convert.ToHexString(data[..Math.Min(8, data.Length)])}) " +
                    "is not JPEG, PNG, WebP or BMP (GIF and TIFF only when ImageDecodingOptions allows them).");
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
        bool sizeKnown = walk.Width >= 0 && walk.Height >= 0;
        bool lenient = prefixOnly && walk.Truncated;
        if (lenient && (walk.Width <= 0 || walk.Height <= 0)) return new EncodedImageHeader(format, -1, -1);
        if (sizeKnown) ImageLimits.CheckSize(Name(format), walk.Width, walk.Height, options, frames: walk.Frames);
        if (!sizeKnown || (walk.Problem is not null && !lenient))
            throw new MiniGptImageException($"{(walk.Truncated ? "Truncated" : "Invalid")} {Name(format)} image: {walk.Problem ?? "no size in the header"}.");
        return new EncodedImageHeader(format, walk.Width, walk.Height);
    }

    /// <summary>Declared size (-1 when unknown) and the first structural problem (null when complete).</summary>
    private readonly record struct Walk(long Width, long Height, string? Problem, bool Truncated, long Frames = 1)
    {
        public static Walk Ok(long w, long h) => new(w, h, null, false);
        public static Walk Cut(long w, long h, string problem) => new(w, h, problem, true);
        public static Walk Bad(long w, long h, string problem) => new(w, h, problem, false);
    }

    private static string Ascii(ReadOnlySpan<byte> fourcc) => System.Text.Encoding.ASCII.GetString(fourcc);

    private static Walk WalkJpeg(ReadOnlySpan<byte> d)
    {
        long w = -1, h = -1;
        bool sawScan = false;
        int pos = 2;
        while (true)
        {
            // libjpeg skips extraneous bytes before a marker (with a warning); so do we.
            int next = d[pos..].IndexOf((byte)0xFF);
            if (next < 0) return Walk.Cut(w, h, $"the data ends after {d.Length} bytes without the end-of-image marker (FFD9)");
            pos += next;
            while (pos < d.Length && d[pos] == 0xFF) pos++;
            if (pos >= d.Length) return Walk.Cut(w, h, "the data ends inside a marker");
            int marker = d[pos++];
            if (marker == 0xD9)
                return sawScan ? Walk.Ok(w, h) : Walk.Bad(w, h, "the end-of-image marker comes before any image data");
            if (marker is 0x00 or 0x01 or (>= 0xD0 and <= 0xD7)) continue; // no length field
            if (marker == 0xD8) return Walk.Bad(w, h, "a second start-of-image marker");
            if (pos + 2 > d.Length) return Walk.Cut(w, h, $"the data ends inside the length of marker FF{marker:X2}");
            int len = ReadUInt16BigEndian(d[pos..]);
            if (len < 2) return Walk.Bad(w, h, $"marker FF{marker:X2} at byte {pos - 2} has an invalid length {len}");
            if (pos + len > d.Length)
                return Walk.Cut(w, h, $"marker segment FF{marker:X2} at byte {pos - 2} declares {len} bytes but only {d.Length - pos} remain");
            if (marker is >= 0xC0 and <= 0xCF and not (0xC4 or 0xC8 or 0xCC)) // a frame header (SOFn)
            {
                if (len < 8) return Walk.Bad(w, h, $"frame header FF{marker:X2} is too short ({len} bytes)");
                (h, w) = (ReadUInt16BigEndian(d[(pos + 3)..]), ReadUInt16BigEndian(d[(pos + 5)..]));
            }
            pos += len;
            if (marker != 0xDA) continue;

            if (w < 0) return Walk.Bad(w, h, "a scan comes before the frame header");
            sawScan = true;
            // Entropy-coded data: inside it 0xFF is followed by 00 (stuffing), a restart marker or another
            // 0xFF (fill), so any other marker ends the scan.
            while (true)
            {
                int ff = d[pos..].IndexOf((byte)0xFF);
                if (ff < 0 || pos + ff + 1 >= d.Length)
                    return Walk.Cut(w, h, $"the data ends inside the compressed image data after {d.Length} bytes, without the end-of-image marker (FFD9)");
                pos += ff + 1;
                if (d[pos] is 0x00 or (>= 0xD0 and <= 0xD7)) pos++;
                else if (d[pos] != 0xFF) break;
            }
            pos--;
        }
    }

    private static Walk WalkPng(ReadOnlySpan<byte> d)
    {
        if (d.Length >= 16 && (!d.Slice(12, 4).SequenceEqual("IHDR"u8) || ReadUInt32BigEndian(d[8..]) < 13))
            return Walk.Bad(-1, -1, "the first chunk is not a valid IHDR header");
        if (d.Length < 24) return Walk.Cut(-1, -1, "the data ends inside the IHDR header");
        long w = ReadUInt32BigEndian(d[16..]), h = ReadUInt32BigEndian(d[20..]);
        bool sawData = false;
        for (int pos = 8; ; )
        {
            if (pos == d.Length) return Walk.Cut(w, h, $"the data ends after {d.Length} bytes without the IEND chunk");
            if (pos + 8 > d.Length) return Walk.Cut(w, h, $"the data ends inside a chunk header at byte {pos}");
            uint len = ReadUInt32BigEndian(d[pos..]);
            var type = d.Slice(pos + 4, 4);
            if ((long)pos + 12 + len > d.Length)
                return Walk.Cut(w, h, $"chunk '{Ascii(type)}' at byte {pos} declares {len} data bytes but only {Math.Max(0, d.Length - pos - 12)} remain");
            sawData |= type.SequenceEqual("IDAT"u8);
            if (type.SequenceEqual("IEND"u8))
                return sawData ? Walk.Ok(w, h) : Walk.Bad(w, h, "IEND comes before any IDAT image data");
            pos += 12 + (int)len;
        }
    }

    /// <summary>Up to the end of the first image: GIF frames after it are not decoded.</summary>
    private static Walk WalkGif(ReadOnlySpan<byte> d)
    {
        if (d.Length < 13) return Walk.Cut(-1, -1, "the data ends inside the logical screen descriptor");
        long w = ReadUInt16LittleEndian(d[6..]), h = ReadUInt16LittleEndian(d[8..]);
        int pos = 13 + ColourTableBytes(d[10]);
        while (pos < d.Length && d[pos] == 0x21) // extension blocks
        {
            pos += 2;
            if (!SkipSubBlocks(d, ref pos)) return Walk.Cut(w, h, "the data ends inside an extension block");
        }
        if (pos >= d.Length) return Walk.Cut(w, h, $"the data ends after {d.Length} bytes before the first image is complete");
        if (d[pos] == 0x3B) return Walk.Bad(w, h, "the file ends (trailer) before any image");
        if (d[pos] != 0x2C) return Walk.Bad(w, h, $"unexpected block 0x{d[pos]:X2} at byte {pos}");
        if (pos + 10 > d.Length) return Walk.Cut(w, h, "the data ends inside the image descriptor");
        var descriptor = d.Slice(pos + 1, 9); // left, top, width, height, flags
        w = Math.Max(w, ReadUInt16LittleEndian(descriptor) + (long)ReadUInt16LittleEndian(descriptor[4..]));
        h = Math.Max(h, ReadUInt16LittleEndian(descriptor[2..]) + (long)ReadUInt16LittleEndian(descriptor[6..]));
        pos += 10 + ColourTableBytes(descriptor[8]) + 1; // + the LZW minimum code size
        return SkipSubBlocks(d, ref pos) ? Walk.Ok(w, h) : Walk.Cut(w, h, $"the data ends after {d.Length} bytes inside the first image's data");
    }

    private static int ColourTableBytes(byte flags) => (flags & 0x80) != 0 ? 3 << ((flags & 7) + 1) : 0;

    private static bool SkipSubBlocks(ReadOnlySpan<byte> d, ref int pos)
    {
        while (pos < d.Length)
        {
            int size = d[pos];
            pos += 1 + size;
            if (size == 0) return true;
        }
        return false;
    }

    private static Walk WalkBmp(ReadOnlySpan<byte> d)
    {
        if (d.Length < 18) return Walk.Cut(-1, -1, "the data ends inside the file header");
        long offBits = ReadUInt32LittleEndian(d[10..]), dib = ReadUInt32LittleEndian(d[14..]);
        long w, h, compression = 0;
        int bpp;
        if (dib == 12)
        {
            if (d.Length < 26) return Walk.Cut(-1, -1, "the data ends inside the bitmap header");
            (w, h, bpp) = (ReadUInt16LittleEndian(d[18..]), ReadUInt16LittleEndian(d[20..]), ReadUInt16LittleEndian(d[24..]));
        }
        else if (dib >= 16)
        {
            if (d.Length < 14 + Math.Min(dib, 40)) return Walk.Cut(-1, -1, "the data ends inside the bitmap header");
            w = ReadInt32LittleEndian(d[18..]);
            if (w < 0) return Walk.Bad(-1, -1, $"negative width {w}");
            h = Math.Abs((long)ReadInt32LittleEndian(d[22..])); // negative height = rows stored top-down
            bpp = ReadUInt16LittleEndian(d[28..]);
            if (dib >= 20) compression = ReadUInt32LittleEndian(d[30..]);
        }
        else return Walk.Bad(-1, -1, $"unknown bitmap header size {dib}");

        if (offBits >= d.Length) return Walk.Cut(w, h, $"the pixel data offset {offBits} is past the end of the data ({d.Length} bytes)");
        // The pixel array is checked for uncompressed and bit-field BMPs; for RLE only its offset.
        bool plain = compression is 0 or 3 or 6 && bpp is 1 or 2 or 4 or 8 or 16 or 24 or 32;
        long need = offBits + (w * bpp + 31) / 32 * 4 * h;
        return plain && need > d.Length
            ? Walk.Cut(w, h, $"{w}x{h} pixels at {bpp} bits need {need} bytes but the data has {d.Length}")
            : Walk.Ok(w, h);
    }

    private static Walk WalkWebP(ReadOnlySpan<byte> d)
    {
        long end = 8L + ReadUInt32LittleEndian(d[4..]);
        long w = -1, h = -1, frames = 0;
        bool sawImage = false;
        // Sizes come from the first chunk; the RIFF length is checked after it so that a bomb header is
        // reported as such.
        string? cut = end > d.Length ? $"the RIFF header declares {end} bytes but the data has {d.Length}" : null;
        for (long pos = 12; pos + 8 <= Math.Min(end, d.Length); )
        {
            var fourcc = d.Slice((int)pos, 4);
            long size = ReadUInt32LittleEndian(d[(int)(pos + 4)..]);
            var p = d[(int)(pos + 8)..];
            bool vp8 = fourcc.SequenceEqual("VP8 "u8), vp8L = fourcc.SequenceEqual("VP8L"u8), anmf = fourcc.SequenceEqual("ANMF"u8);
            if (w < 0 && fourcc.SequenceEqual("VP8X"u8) && p.Length >= 10)
                (w, h) = (1 + (p[4] | p[5] << 8 | p[6] << 16), 1 + (p[7] | p[8] << 8 | p[9] << 16));
            else if (w < 0 && vp8 && p.Length >= 10)
            {
                if (!p.Slice(3, 3).SequenceEqual((ReadOnlySpan<byte>)[0x9D, 0x01, 0x2A])) return Walk.Bad(w, h, "the VP8 frame has no start code");
                (w, h) = (ReadUInt16LittleEndian(p[6..]) & 0x3FFF, ReadUInt16LittleEndian(p[8..]) & 0x3FFF);
            }
            else if (w < 0 && vp8L && p.Length >= 5)
            {
                if (p[0] != 0x2F) return Walk.Bad(w, h, "the VP8L bitstream has no signature");
                uint bits = ReadUInt32LittleEndian(p[1..]);
                (w, h) = (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF));
            }
            sawImage |= vp8 || vp8L || anmf;
            if (anmf) frames++;
            if (pos + 8 + size > end) return Walk.Cut(w, h, $"chunk '{Ascii(fourcc)}' declares {size} bytes past the end of the RIFF data");
            pos += 8 + size + (size & 1);
        }
        if (cut is not null) return Walk.Cut(w, h, cut);
        if (w < 0) return Walk.Bad(w, h, "no VP8, VP8L or VP8X chunk gives the image size");
        return sawImage ? Walk.Ok(w, h) with { Frames = Math.Max(1, frames) } : Walk.Bad(w, h, "no image data chunk (VP8, VP8L or ANMF)");
    }

    /// <summary>Up to the strips or tiles of the first page: pages after it are not decoded.</summary>
    private static Walk WalkTiff(ReadOnlySpan<byte> d)
    {
        bool le = d[0] == (byte)'I', big = d[le ? 2 : 3] == 43;
        int headerLen = big ? 16 : 8, countSize = big ? 8 : 2, entrySize = big ? 20 : 12, fieldSize = big ? 8 : 4;
        if (d.Length < headerLen) return Walk.Cut(-1, -1, "the data ends inside the header");
        ulong ifd = U(d, le, big ? 8 : 4, fieldSize);
        // Written so that a BigTIFF offset near 2^64 cannot wrap around (ifd + countSize overflowed, then Slice(-8) threw).
        if (ifd < (ulong)headerLen || ifd > (ulong)d.Length || (ulong)countSize > (ulong)d.Length - ifd)
            return Walk.Cut(-1, -1, $"the first directory at byte {ifd} is past the end of the data ({d.Length} bytes)");
        ulong entries = U(d, le, (int)ifd, countSize);
        if (entries > 65535 || ifd + (ulong)countSize + entries * (ulong)entrySize > (ulong)d.Length)
            return Walk.Cut(-1, -1, $"the first directory declares {entries} entries past the end of the data");

        long w = -1, h = -1;
        ulong[]? offsets = null, counts = null;
        for (ulong i = 0; i < entries; i++)
        {
            int e = (int)(ifd + (ulong)countSize + i * (ulong)entrySize);
            int tag = (int)U(d, le, e, 2), vsize = (int)U(d, le, e + 2, 2) switch { 3 => 2, 4 => 4, 16 => 8, _ => 0 };
            if (vsize == 0 || tag is not (256 or 257 or 273 or 279 or 322 or 323 or 324 or 325)) continue;
            ulong n = U(d, le, e + 4, fieldSize);
            if (n > int.MaxValue / 8) return Walk.Bad(w, h, $"tag {tag} declares {n} values");
            ulong bytes = n * (ulong)vsize;
            ulong at = bytes <= (ulong)fieldSize ? (ulong)(e + 4 + fieldSize) : U(d, le, e + 4 + fieldSize, fieldSize);
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
        return ChainProblem(d, le, ifd, countSize, entrySize, fieldSize) is { } chain ? Walk.Bad(w, h, chain) : Walk.Ok(w, h);
    }

    /// <summary>
    /// The chain of directories (pages) from <paramref name="ifd"/>: ImageSharp 2.1 reads every one while identifying,
    /// and a "next directory" offset into pixel data or back to an earlier directory made it loop for ever (found by
    /// fuzzing). Each directory must lie whole in the data, once; at most <see cref="MaxTiffPages"/>.
    /// </summary>
    private static string? ChainProblem(ReadOnlySpan<byte> d, bool le, ulong ifd, int countSize, int entrySize, int fieldSize)
    {
        var seen = new HashSet<ulong>();
        for (var pages = 0; ifd != 0; pages++)
        {
            if (pages == MaxTiffPages) return $"more than {MaxTiffPages} directories (pages)";
            if (!seen.Add(ifd)) return $"the directory at byte {ifd} is linked twice";
            if (ifd > (ulong)d.Length || (ulong)countSize > (ulong)d.Length - ifd) return $"a directory at byte {ifd} lies past the end of the data";
            ulong entries = U(d, le, (int)ifd, countSize);
            if (entries > 65535) return $"the directory at byte {ifd} declares {entries} entries";
            ulong next = ifd + (ulong)countSize + entries * (ulong)entrySize;
            if (next > (ulong)d.Length || (ulong)fieldSize > (ulong)d.Length - next)
                return $"the directory at byte {ifd} declares {entries} entries past the end of the data";
            ifd = U(d, le, (int)next, fieldSize);
        }
        return null;
    }

    /// <summary>Most directories (pages) a TIFF may chain.</summary>
    private const int MaxTiffPages = 256;

    /// <summary>An unsigned TIFF field of 2, 4 or 8 bytes in the file's byte order.</summary>
    private static ulong U(ReadOnlySpan<byte> d, bool le, int at, int size)
    {
        var s = d.Slice(at, size);
        return size switch
        {
            2 => le ? ReadUInt16LittleEndian(s) : ReadUInt16BigEndian(s),
            4 => le ? ReadUInt32LittleEndian(s) : ReadUInt32BigEndian(s),
            _ => le ? ReadUInt64LittleEndian(s) : ReadUInt64BigEndian(s),
        };
    }
}
