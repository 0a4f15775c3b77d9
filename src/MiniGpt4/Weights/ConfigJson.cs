using System.Text;
using System.Text.Json;

namespace MiniGpt4.Weights;

/// <summary>
/// A JSON object of a configuration file, read with bounds: at most <see cref="MaxFileBytes"/>, valid UTF-8, at most
/// 16 levels deep, no duplicate keys (comments and trailing commas are allowed). Invalid text and fields of the wrong
/// type are refused through <see cref="Check"/>, naming the file and the field.
/// </summary>
internal readonly record struct ConfigJson(JsonElement Element, ConfigCheck Check)
{
    /// <summary>Largest configuration file read (real ones are about 1 KB).</summary>
    public const long MaxFileBytes = 1L << 20;

    private static readonly JsonDocumentOptions Options = new()
    {
        CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true, AllowDuplicateProperties = false, MaxDepth = 16,
    };

    /// <summary>Reads the file at <paramref name="path"/>; the messages start with the path.</summary>
    public static ConfigJson Read(string path)
    {
        var check = new ConfigCheck(path);
        try
        {
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            check.Require(stream.Length <= MaxFileBytes, $"the file is {stream.Length} bytes, over the {MaxFileBytes >> 20} MB limit for a configuration file");
            var bytes = new byte[stream.Length];
            stream.ReadExactly(bytes);
            return Parse(bytes, path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw check.Error($"cannot read: {ex.Message}", ex);
        }
    }

    /// <summary>Parses JSON text; the messages start with <paramref name="where"/>.</summary>
    public static ConfigJson Parse(string json, string where) => Parse(Encoding.UTF8.GetBytes(json), where);

    /// <summary>Parses UTF-8 JSON text; the messages start with <paramref name="where"/>.</summary>
    public static ConfigJson Parse(ReadOnlySpan<byte> utf8, string where)
    {
        var check = new ConfigCheck(where);
        // JsonElement does not validate UTF-8 inside strings; GetString would then throw InvalidOperationException.
        check.Require(System.Text.Unicode.Utf8.IsValid(utf8), "not valid UTF-8 JSON text");
        JsonElement root;
        try { root = JsonElement.Parse(utf8, Options); }
        catch (JsonException ex) { throw check.Error($"invalid JSON: {ex.Message}", ex); }
        catch (InvalidOperationException ex) { throw check.Error($"invalid JSON text: {ex.Message}", ex); } // a key with an escaped lone surrogate
        check.Require(root.ValueKind == JsonValueKind.Object, "the top level must be a JSON object");
        return new ConfigJson(root, check);
    }

    /// <summary>The value of <paramref name="name"/>; null when absent or JSON null.</summary>
    public JsonElement? this[string name] => Element.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    public ConfigJson? Object(string name) => this[name] is not { } v ? null
        : v.ValueKind == JsonValueKind.Object ? this with { Element = v } : throw Wrong(name, v, "an object");

    /// <summary>The integer <paramref name="name"/> (a plain JSON integer that fits 32 bits), or null.</summary>
    public int? Int(string name) => this[name] is not { } v ? null
        : v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : throw Wrong(name, v, "an integer (a plain JSON integer that fits 32 bits)");

    public int RequiredInt(string name) => Int(name) ?? throw Check.Error($"'{name}' is missing");

    /// <summary>The finite number <paramref name="name"/>, or null.</summary>
    public double? Number(string name) => this[name] is not { } v ? null
        : v.ValueKind == JsonValueKind.Number && v.TryGetDouble(out var d) && double.IsFinite(d) ? d : throw Wrong(name, v, "a finite number");

    public bool? Bool(string name) => this[name] is not { } v ? null
        : v.ValueKind is JsonValueKind.True or JsonValueKind.False ? v.GetBoolean() : throw Wrong(name, v, "true or false");

    /// <summary>The string <paramref name="name"/> (without NUL: most are paths), or null.</summary>
    public string? String(string name)
    {
        if (this[name] is not { } v) return null;
        if (v.ValueKind != JsonValueKind.String) throw Wrong(name, v, "a string");
        string s;
        try { s = v.GetString()!; }
        catch (InvalidOperationException ex) { throw Check.Error($"'{name}' is not a valid string: {ex.Message}", ex); } // an escaped lone surrogate
        Check.Require(!s.Contains('\0'), $"'{name}' contains a NUL character");
        return s;
    }

    private MiniGptConfigurationException Wrong(string name, JsonElement v, string what)
    {
        var raw = v.GetRawText();
        return Check.Error($"'{name}' must be {what}, got {(raw.Length <= 40 ? raw : raw[..40] + "...")}");
    }
}
