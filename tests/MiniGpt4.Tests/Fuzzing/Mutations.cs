using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CsCheck;

namespace MiniGpt4.Tests.Fuzzing;

internal enum ByteOp { FlipBit, SetByte, Overwrite16, Overwrite32, Overwrite64, Truncate, Insert, Delete, CopyChunk, Repeat }

/// <summary>
/// One byte-level mutation. <see cref="Region"/> biases where it lands (0 anywhere, 1 the first KB,
/// 2 the last KB: where headers, zip directories and pickles live, 3 the first 32 bytes: the fixed
/// header fields of every image format and of safetensors); positions and values are raw
/// random numbers mapped onto the input when applied, so a case is printable and replayable.
/// </summary>
internal readonly record struct ByteMutation(ByteOp Op, int Region, uint Pos, uint Arg, ulong Value)
{
    public override string ToString() => $"{Op}(r{Region},p{Pos},a{Arg},v0x{Value:X})";
}

/// <summary>Seeded byte- and JSON-level mutations of valid inputs, as CsCheck generators.</summary>
internal static class Mutations
{
    /// <summary>Numbers that break length and offset arithmetic.</summary>
    private static readonly ulong[] Interesting =
    [
        0, 1, 2, 7, 8, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
        0x100000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFF8, 1UL << 40, 1UL << 62,
    ];

    private static readonly Gen<ByteOp> Ops = Gen.Frequency(
        (6, ByteOp.FlipBit), (5, ByteOp.SetByte), (2, ByteOp.Overwrite16), (4, ByteOp.Overwrite32), (3, ByteOp.Overwrite64),
        (2, ByteOp.Truncate), (2, ByteOp.Insert), (2, ByteOp.Delete), (1, ByteOp.CopyChunk), (1, ByteOp.Repeat));

    public static readonly Gen<ByteMutation> One =
        Gen.Select(Ops, Gen.Int[0, 3], Gen.UInt, Gen.UInt, Gen.ULong, (op, region, pos, arg, value) => new ByteMutation(op, region, pos, arg, value));

    /// <summary>1 to <paramref name="max"/> mutations.</summary>
    public static Gen<ByteMutation[]> Some(int max = 6) => One.Array[1, max];

    /// <summary>Applies <paramref name="ops"/> in order to a copy of <paramref name="input"/>.</summary>
    public static byte[] Apply(ReadOnlySpan<byte> input, IEnumerable<ByteMutation> ops)
    {
        var b = new List<byte>(input.Length + 64);
        b.AddRange(input);
        foreach (var m in ops) Apply(b, m);
        return b.ToArray();
    }

    private static int Position(List<byte> b, ByteMutation m, bool end = false)
    {
        var n = b.Count + (end ? 1 : 0);
        if (n == 0) return 0;
        var window = Math.Min(n, 1024);
        return m.Region switch
        {
            1 => (int)(m.Pos % (uint)window),
            2 => n - 1 - (int)(m.Pos % (uint)window),
            3 => (int)(m.Pos % (uint)Math.Min(n, 32)),
            _ => (int)(m.Pos % (uint)n),
        };
    }

    private static ulong Number(List<byte> b, ByteMutation m) => (m.Arg % 4) switch
    {
        0 or 1 => Interesting[m.Arg / 4 % (uint)Interesting.Length],
        2 => (ulong)b.Count + (m.Value % 17) - 8, // near the input's length
        _ => m.Value,
    };

    private static void Apply(List<byte> b, ByteMutation m)
    {
        switch (m.Op)
        {
            case ByteOp.FlipBit when b.Count > 0:
                b[Position(b, m)] ^= (byte)(1 << (int)(m.Arg % 8));
                break;
            case ByteOp.SetByte when b.Count > 0:
                b[Position(b, m)] = (m.Arg % 3) == 0 ? (byte)m.Value : (byte)Interesting[m.Arg % 9];
                break;
            case ByteOp.Overwrite16 or ByteOp.Overwrite32 or ByteOp.Overwrite64:
            {
                var size = m.Op == ByteOp.Overwrite16 ? 2 : m.Op == ByteOp.Overwrite32 ? 4 : 8;
                if (b.Count < size) break;
                var at = Math.Min(Position(b, m), b.Count - size);
                Span<byte> v = stackalloc byte[8];
                if ((m.Arg & 0x10000) == 0) BinaryPrimitives.WriteUInt64LittleEndian(v, Number(b, m));
                else BinaryPrimitives.WriteUInt64BigEndian(v, Number(b, m) << (64 - 8 * size));
                for (var i = 0; i < size; i++) b[at + i] = v[i];
                break;
            }
            case ByteOp.Truncate:
                if (b.Count > 0) b.RemoveRange(Position(b, m), b.Count - Position(b, m));
                break;
            case ByteOp.Insert:
            {
                var at = Position(b, m, end: true);
                var count = 1 + (int)(m.Arg % 16);
                var bytes = new byte[count];
                for (var i = 0; i < count; i++) bytes[i] = (byte)(m.Value >> (8 * (i % 8)));
                b.InsertRange(at, bytes);
                break;
            }
            case ByteOp.Delete when b.Count > 0:
            {
                var at = Position(b, m);
                b.RemoveRange(at, Math.Min(b.Count - at, 1 + (int)(m.Arg % 64)));
                break;
            }
            case ByteOp.CopyChunk when b.Count > 0:
            {
                var from = (int)(m.Value % (uint)b.Count);
                var count = Math.Min(b.Count - from, 1 + (int)(m.Arg % 256));
                var chunk = b.GetRange(from, count);
                b.InsertRange(Position(b, m, end: true), chunk);
                break;
            }
            case ByteOp.Repeat when b.Count > 0:
            {
                var at = Position(b, m);
                var count = Math.Min(b.Count - at, 1 + (int)(m.Arg % 8));
                var chunk = b.GetRange(at, count);
                // Mostly a few hundred times; one in 16 up to 300 000 (deep nesting, huge counts), within 4 MB.
                var times = 2 + (int)(m.Value % ((m.Arg & 0xF00) == 0 ? 300_000UL : 512UL));
                var total = (int)Math.Min((long)times * count, Math.Max(0, (4 << 20) - b.Count));
                var block = new byte[total];
                for (var i = 0; i < total; i++) block[i] = chunk[i % count];
                b.InsertRange(at, block); // one insertion: repeated InsertRange is quadratic
                break;
            }
        }
    }

    // ------------------------------------------------------------------ JSON

    /// <summary>JSON texts that probe number parsing, types, bounds, depth and size.</summary>
    private static readonly string[] JsonValues =
    [
        "0", "-1", "1", "2", "3", "4", "-2147483648", "2147483647", "2147483648", "4294967296", "9223372036854775807",
        "9223372036854775808", "-9223372036854775809", "1e9", "1E9", "1e999", "-1e999", "1e-400", "2.5", "1.0", "-0", "0.0",
        "1048576", "1048577", "1000000", "1000000000", "65536", "262145", "1024", "1025", "0.5", "1e-12", "true", "false", "null",
        "\"\"", "\"llama\"", "\"silu\"", "\"gelu\"", "\"minigptv2\"", "\"minigpt4-llama2\"", "\"\\u0000\"", "\"a\\u0000b\"",
        "\"../../etc/passwd\"", "\"/\"", "\"/dev/zero\"", "\"/proc/self/mem\"", "\".\"", "\"\\ud800\"", "\"64\"",
        "[]", "{}", "[1,2]", "[\"a\"]", "[null]", "[[1]]", "{\"type\":\"linear\",\"factor\":2}", "{\"a\":{\"b\":{}}}",
    ];

    internal enum JsonOp { Replace, Remove, Duplicate, AddUnknown, DeepNest, LongString, BigArray }

    /// <summary>One JSON-level mutation: which node (<see cref="Path"/> modulo the node count) and what value.</summary>
    internal readonly record struct JsonMutation(JsonOp Op, uint Path, uint Value, long Raw)
    {
        public override string ToString() => $"{Op}(n{Path},v{Value},{Raw})";
    }

    private static readonly Gen<JsonOp> JsonOps = Gen.Frequency(
        (12, JsonOp.Replace), (3, JsonOp.Remove), (3, JsonOp.Duplicate), (1, JsonOp.AddUnknown), (1, JsonOp.DeepNest),
        (1, JsonOp.LongString), (1, JsonOp.BigArray));

    public static readonly Gen<JsonMutation> OneJson =
        Gen.Select(JsonOps, Gen.UInt, Gen.UInt, Gen.Long, (op, path, value, raw) => new JsonMutation(op, path, value, raw));

    /// <summary>A mutated JSON text: 1 to 4 JSON mutations, then, for about a quarter of the cases, 1 to 3 byte mutations of the text.</summary>
    public static Gen<(JsonMutation[] Json, ByteMutation[] Bytes)> JsonCase =>
        Gen.Select(OneJson.Array[1, 4], Gen.Int[0, 3], Some(3), (j, withBytes, bytes) => (j, withBytes == 0 ? bytes : []));

    /// <summary>Applies the JSON mutations to <paramref name="json"/> (a valid document), then the byte mutations to its UTF-8 text.</summary>
    public static byte[] ApplyJson(string json, JsonMutation[] mutations, ByteMutation[] bytes)
    {
        var root = JsonNode.Parse(json)!;
        var raws = new Dictionary<string, string>(StringComparer.Ordinal);
        var duplicates = new List<(string Token, string Key, string Raw)>();
        foreach (var m in mutations)
        {
            var slots = new List<(JsonNode Parent, string? Key, int Index)>();
            Collect(root, slots);
            if (slots.Count == 0) continue;
            var (parent, key, index) = slots[(int)(m.Path % (uint)slots.Count)];
            var raw = ValueText(m);
            var token = $"@@fuzz{raws.Count}@@";
            switch (m.Op)
            {
                case JsonOp.Remove when parent is JsonObject o && key is not null:
                    o.Remove(key);
                    break;
                case JsonOp.Remove when parent is JsonArray a:
                    a.RemoveAt(index);
                    break;
                case JsonOp.Duplicate when parent is JsonObject o && key is not null:
                    // JsonObject cannot hold a duplicate: add a placeholder property renamed in the text.
                    var dupKey = $"@@dup{duplicates.Count}@@";
                    o[dupKey] = token;
                    raws[token] = raw;
                    duplicates.Add((dupKey, key, raw));
                    break;
                case JsonOp.AddUnknown when parent is JsonObject o:
                    o[$"unknown_{m.Raw & 0xFF}"] = token;
                    raws[token] = raw;
                    break;
                default:
                    if (parent is JsonObject po && key is not null) po[key] = token;
                    else if (parent is JsonArray pa) pa[index] = token;
                    raws[token] = raw;
                    break;
            }
        }
        var text = root.ToJsonString();
        foreach (var (token, raw) in raws) text = text.Replace($"\"{token}\"", raw, StringComparison.Ordinal);
        foreach (var (dup, key, _) in duplicates) text = text.Replace($"\"{dup}\"", JsonSerializer.Serialize(key), StringComparison.Ordinal);
        var utf8 = Encoding.UTF8.GetBytes(text);
        return bytes.Length == 0 ? utf8 : Apply(utf8, bytes);
    }

    private static string ValueText(JsonMutation m) => m.Op switch
    {
        JsonOp.DeepNest => new string('[', 8 + (int)(m.Value % 300)) + new string(']', 8 + (int)(m.Value % 300)),
        JsonOp.LongString => "\"" + new string('a', (int)(m.Value % (1 << 16))) + "\"",
        JsonOp.BigArray => "[" + string.Join(",", Enumerable.Repeat("1", 1 + (int)(m.Value % 20_000))) + "]",
        _ => (m.Value % 5) switch
        {
            0 => m.Raw.ToString(CultureInfo.InvariantCulture),
            1 => (m.Raw % 100_000).ToString(CultureInfo.InvariantCulture),
            2 => BitConverter.Int64BitsToDouble(m.Raw) is var d && double.IsFinite(d) ? d.ToString("R", CultureInfo.InvariantCulture) : "1e308",
            _ => JsonValues[m.Value / 5 % (uint)JsonValues.Length],
        },
    };

    private static void Collect(JsonNode node, List<(JsonNode, string?, int)> slots)
    {
        switch (node)
        {
            case JsonObject o:
                foreach (var (k, v) in o.ToList())
                {
                    slots.Add((o, k, -1));
                    if (v is not null) Collect(v, slots);
                }
                break;
            case JsonArray a:
                for (var i = 0; i < a.Count; i++)
                {
                    slots.Add((a, null, i));
                    if (a[i] is { } v) Collect(v, slots);
                }
                break;
        }
    }
}
