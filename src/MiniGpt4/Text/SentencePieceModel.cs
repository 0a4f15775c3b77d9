using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace MiniGpt4.Text;

/// <summary>Kind of a vocabulary entry, as SentencePiece's <c>ModelProto.SentencePiece.Type</c>.</summary>
internal enum PieceType
{
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
}

internal readonly record struct SentencePiece(string Piece, float Score, PieceType Type)
{
    /// <summary>The byte a <see cref="PieceType.Byte"/> piece <c>&lt;0xNN&gt;</c> stands for (checked when the model is read).</summary>
    public byte ByteValue => byte.Parse(Piece.AsSpan(3, 2), NumberStyles.AllowHexSpecifier);
}

/// <summary>
/// The parts of a SentencePiece <c>tokenizer.model</c> (a <c>ModelProto</c> protobuf) that encoding
/// and decoding depend on: the pieces with their scores and types, the model type, the byte-fallback
/// switch and the normaliser settings. Read with a minimal protobuf reader; unknown fields are skipped.
/// </summary>
internal sealed class SentencePieceModel
{
    /// <summary>The symbol SentencePiece writes for a space (U+2581).</summary>
    public const char SpaceSymbol = '\u2581';

    /// <summary>SentencePiece's <c>TrainerSpec.ModelType.BPE</c>.</summary>
    public const int ModelTypeBpe = 2;

    public List<SentencePiece> Pieces { get; } = new();
    public int ModelType { get; private set; } = 1;               // TrainerSpec.model_type, default UNIGRAM
    public bool ByteFallback { get; private set; }                // TrainerSpec.byte_fallback
    public bool TreatWhitespaceAsSuffix { get; private set; }     // TrainerSpec.treat_whitespace_as_suffix
    public string UnknownSurface { get; private set; } = " \u2047 "; // TrainerSpec.unk_surface
    public string NormalizerName { get; private set; } = "";
    public bool HasPrecompiledCharsMap { get; private set; }
    public bool AddDummyPrefix { get; private set; } = true;
    public bool RemoveExtraWhitespaces { get; private set; } = true;
    public bool EscapeWhitespaces { get; private set; } = true;

    /// <summary>Reads <paramref name="path"/>; a missing, truncated or non-SentencePiece file throws <see cref="MiniGptConfigurationException"/>.</summary>
    public static SentencePieceModel Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        byte[] data;
        try { data = File.ReadAllBytes(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new MiniGptConfigurationException($"Cannot read the tokenizer model '{path}': {e.Message}", e);
        }
        try { return Parse(data); }
        catch (FormatException e)
        {
            throw new MiniGptConfigurationException($"'{path}' is not a valid SentencePiece model: {e.Message}", e);
        }
    }

    /// <summary>Parses a serialized <c>ModelProto</c>; malformed input throws <see cref="FormatException"/>.</summary>
    private static SentencePieceModel Parse(ReadOnlySpan<byte> data)
    {
        var m = new SentencePieceModel();
        var top = new ProtoReader(data);
        while (top.Next(out int field, out int wire))
        {
            switch (field)
            {
                case 1 when wire == 2:
                    m.Pieces.Add(ReadPiece(top.ReadBytes()));
                    break;
                case 2 when wire == 2:
                {
                    var t = new ProtoReader(top.ReadBytes());
                    while (t.Next(out int f, out int w))
                    {
                        if (f == 3 && w == 0) m.ModelType = (int)t.ReadVarint();
                        else if (f == 24 && w == 0) m.TreatWhitespaceAsSuffix = t.ReadVarint() != 0;
                        else if (f == 35 && w == 0) m.ByteFallback = t.ReadVarint() != 0;
                        else if (f == 44 && w == 2) m.UnknownSurface = Encoding.UTF8.GetString(t.ReadBytes());
                        else t.Skip(w);
                    }
                    break;
                }
                case 3 when wire == 2:
                {
                    var n = new ProtoReader(top.ReadBytes());
                    while (n.Next(out int f, out int w))
                    {
                        if (f == 1 && w == 2) m.NormalizerName = Encoding.UTF8.GetString(n.ReadBytes());
                        else if (f == 2 && w == 2) m.HasPrecompiledCharsMap = n.ReadBytes().Length > 0;
                        else if (f == 3 && w == 0) m.AddDummyPrefix = n.ReadVarint() != 0;
                        else if (f == 4 && w == 0) m.RemoveExtraWhitespaces = n.ReadVarint() != 0;
                        else if (f == 5 && w == 0) m.EscapeWhitespaces = n.ReadVarint() != 0;
                        else n.Skip(w);
                    }
                    break;
                }
                default:
                    top.Skip(wire);
                    break;
            }
        }
        if (m.Pieces.Count == 0) throw new FormatException("the model has no pieces");
        return m;
    }

    private static SentencePiece ReadPiece(ReadOnlySpan<byte> data)
    {
        var r = new ProtoReader(data);
        string piece = "";
        float score = 0;
        var type = PieceType.Normal;
        while (r.Next(out int f, out int w))
        {
            if (f == 1 && w == 2) piece = Encoding.UTF8.GetString(r.ReadBytes());
            else if (f == 2 && w == 5) score = r.ReadFloat();
            else if (f == 3 && w == 0)
            {
                ulong t = r.ReadVarint();
                if (t is < 1 or > 6) throw new FormatException($"unknown piece type {t}");
                type = (PieceType)t;
            }
            else r.Skip(w);
        }
        if (piece.Length == 0) throw new FormatException("a piece is empty");
        if (type == PieceType.Byte && !IsBytePiece(piece)) throw new FormatException($"byte piece '{piece}' is not of the form <0xNN>");
        return new SentencePiece(piece, score, type);
    }

    private static bool IsBytePiece(string piece) => piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>'
        && byte.TryParse(piece.AsSpan(3, 2), NumberStyles.AllowHexSpecifier, null, out _);

    /// <summary>Minimal protobuf wire-format reader (varint, float, length-delimited; fixed64 and fixed32 skipped).</summary>
    private ref struct ProtoReader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private int _pos;

        public bool Next(out int field, out int wire)
        {
            if (_pos >= _data.Length) { field = 0; wire = 0; return false; }
            ulong key = ReadVarint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            if (field == 0) throw new FormatException("field number 0");
            return true;
        }

        public ulong ReadVarint()
        {
            ulong result = 0;
            for (int shift = 0; shift < 64; shift += 7)
            {
                if (_pos >= _data.Length) throw new FormatException("truncated varint");
                byte b = _data[_pos++];
                result |= (ulong)(b & 0x7F) << shift;
                if ((b & 0x80) == 0) return result;
            }
            throw new FormatException("varint too long");
        }

        public float ReadFloat() => BinaryPrimitives.ReadSingleLittleEndian(Take(4));

        public ReadOnlySpan<byte> ReadBytes() => Take((int)Math.Min(ReadVarint(), int.MaxValue));

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0: ReadVarint(); break;
                case 1: Take(8); break;
                case 2: ReadBytes(); break;
                case 5: Take(4); break;
                default: throw new FormatException($"unsupported wire type {wire}");
            }
        }

        private ReadOnlySpan<byte> Take(int n)
        {
            if (n > _data.Length - _pos) throw new FormatException("truncated field");
            var bytes = _data.Slice(_pos, n);
            _pos += n;
            return bytes;
        }
    }
}
