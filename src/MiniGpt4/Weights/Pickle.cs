using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>A Python dict (or OrderedDict) read from a pickle: entries in insertion order, a later duplicate key replacing the value in place.</summary>
internal sealed class PyDict : OrderedDictionary<object, object?>
{
    /// <summary>The key None, which a .NET dictionary cannot hold.</summary>
    public static readonly object NoneKey = new();

    /// <summary>Sets <paramref name="key"/> like Python's <c>d[key] = value</c>.</summary>
    public void Set(object? key, object? value) => this[key ?? NoneKey] = value;
}

internal sealed record PyTuple(object?[] Items);

/// <summary>A global name the pickle referred to (only allow-listed ones ever get here).</summary>
internal sealed record PyGlobal(string Module, string Name)
{
    /// <inheritdoc />
    public override string ToString() => Module + "." + Name;
}

/// <summary>An allow-listed object we do not need (torch.device, a set, ...), kept as an inert placeholder.</summary>
internal sealed record PyPlaceholder(string Type, object? State);

/// <summary>A tensor storage named by the pickle's persistent id: record <c>data/&lt;Key&gt;</c> of the archive.</summary>
internal sealed record StorageRef(string Key, torch.ScalarType DType, long NumElements, string Location);

/// <summary>A tensor: a view of a storage.</summary>
internal sealed record TensorRef(StorageRef Storage, long StorageOffset, long[] Shape, long[] Strides);

/// <summary>
/// A data-only unpickler for the pickles <c>torch.save</c> writes (protocol 2; protocols up to 4
/// read too). It never imports or calls anything: GLOBAL may only name an allow-listed constructor
/// (OrderedDict, the tensor rebuild functions, torch storage types, ...) whose effect is emulated
/// here as data; anything else is refused with <see cref="MiniGptWeightsException"/>.
/// </summary>
internal sealed class PickleReader
{
    private static readonly HashSet<string> Callables = new(StringComparer.Ordinal)
    {
        "collections.OrderedDict", "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor",
        "torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state",
        "torch.Size", "torch.device", "_codecs.encode", "builtins.set", "builtins.frozenset",
        "__builtin__.set", "__builtin__.frozenset",
    };

    private static readonly HashSet<string> DTypeNames = new(StringComparer.Ordinal)
    {
        "float16", "float32", "float64", "bfloat16", "half", "float", "double", "int8", "int16", "int32",
        "int64", "uint8", "bool", "long", "int", "short",
    };

    private const int MaxStack = 1 << 20;

    /// <summary>
    /// Values a pickle may create (every push but BINGET/DUP re-pushing an existing one). A torch.save
    /// pickle creates about 25 per tensor, so this allows some 80 000 tensors, while bounding what a
    /// hostile 64 MB pickle of one-byte "new dict" opcodes can allocate (it would otherwise make 64 M objects).
    /// </summary>
    private const int MaxValues = 1 << 21;
    private int _created;
    private readonly byte[] _data;
    private readonly string _file;
    private int _pos;
    private readonly List<object?> _stack = new();
    private readonly Stack<int> _marks = new();
    private readonly Dictionary<long, object?> _memo = new();

    private PickleReader(byte[] data, string file) { _data = data; _file = file; }

    public static object? Load(byte[] data, string file) => new PickleReader(data, file).Run();

    private object? Run()
    {
        while (true)
        {
            var at = _pos;
            var op = ReadByte();
            switch (op)
            {
                case 0x80: ReadByte(); break; // PROTO
                case 0x95: Take(8); break; // FRAME
                case (byte)'.': // STOP
                    if (_stack.Count != 1) throw Bad($"STOP with {_stack.Count} objects on the stack");
                    return _stack[0];
                case (byte)'(': _marks.Push(_stack.Count); break; // MARK
                case (byte)'0': Pop(); break; // POP
                case (byte)'1': PopMark(); break; // POP_MARK
                case (byte)'2': PushExisting(Peek()); break; // DUP
                case (byte)'N': Push(null); break;
                case 0x88: Push(true); break;
                case 0x89: Push(false); break;
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break; // BININT
                case (byte)'K': Push((long)ReadByte()); break; // BININT1
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break; // BININT2
                case 0x8a: Push(ReadLong(ReadByte())); break; // LONG1
                case 0x8b: Push(ReadLong(ReadLength(BinaryPrimitives.ReadInt32LittleEndian(Take(4))))); break; // LONG4
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break; // BINFLOAT
                case (byte)'X': Push(Utf8(ReadLength(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))))); break; // BINUNICODE
                case 0x8c: Push(Utf8(ReadByte())); break; // SHORT_BINUNICODE
                case 0x8d: Push(Utf8(ReadLength(BinaryPrimitives.ReadInt64LittleEndian(Take(8))))); break; // BINUNICODE8
                case (byte)'T': Push(Latin1(ReadLength(BinaryPrimitives.ReadInt32LittleEndian(Take(4))))); break; // BINSTRING
                case (byte)'U': Push(Latin1(ReadByte())); break; // SHORT_BINSTRING
                case (byte)'B': Push(Take(ReadLength(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))).ToArray()); break; // BINBYTES
                case (byte)'C': Push(Take(ReadByte()).ToArray()); break; // SHORT_BINBYTES
                case 0x8e: Push(Take(ReadLength(BinaryPrimitives.ReadInt64LittleEndian(Take(8)))).ToArray()); break; // BINBYTES8
                case (byte)'}': Push(new PyDict()); break; // EMPTY_DICT
                case (byte)']': case 0x8f: Push(new List<object?>()); break; // EMPTY_LIST, EMPTY_SET (kept as a list)
                case (byte)')': Push(new PyTuple([])); break; // EMPTY_TUPLE
                case (byte)'t': Push(new PyTuple(PopMark().ToArray())); break; // TUPLE
                case 0x85: Push(new PyTuple([Pop()])); break; // TUPLE1
                case 0x86: { var b = Pop(); var a = Pop(); Push(new PyTuple([a, b])); break; } // TUPLE2
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new PyTuple([a, b, c])); break; } // TUPLE3
                case (byte)'l': case 0x91: Push(PopMark()); break; // LIST, FROZENSET (kept as a list)
                case (byte)'d': Push(SetItems(new PyDict(), PopMark())); break; // DICT
                case (byte)'a': { var v = Pop(); AsList(Peek(), "APPEND").Add(v); break; } // APPEND
                case (byte)'e': case 0x90: { var items = PopMark(); AsList(Peek(), "APPENDS").AddRange(items); break; } // APPENDS, ADDITEMS
                case (byte)'s': { var v = Pop(); var k = Pop(); AsDict(Peek(), "SETITEM").Set(k, v); break; } // SETITEM
                case (byte)'u': { var items = PopMark(); SetItems(AsDict(Peek(), "SETITEMS"), items); break; } // SETITEMS
                case (byte)'q': Memoize(ReadByte()); break; // BINPUT
                case (byte)'r': Memoize(BinaryPrimitives.ReadUInt32LittleEndian(Take(4))); break; // LONG_BINPUT
                case 0x94: Memoize(_memo.Count); break; // MEMOIZE
                case (byte)'h': PushExisting(Memo(ReadByte())); break; // BINGET
                case (byte)'j': PushExisting(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break; // LONG_BINGET
                case (byte)'c': Push(Global(ReadLine(), ReadLine())); break; // GLOBAL
                case 0x93: // STACK_GLOBAL
                {
                    var name = Pop() as string; var module = Pop() as string;
                    if (name is null || module is null) throw Bad("STACK_GLOBAL without module and name strings");
                    Push(Global(module, name));
                    break;
                }
                case (byte)'R': case 0x81: { var args = Pop(); var fn = Pop(); Push(Call(fn, args)); break; } // REDUCE, NEWOBJ
                case (byte)'b': Pop(); break; // BUILD: state is data only; nothing to apply (e.g. OrderedDict _metadata)
                case (byte)'Q': Push(PersistentLoad(Pop())); break; // BINPERSID
                default:
                    throw Bad($"unsupported pickle opcode 0x{op:x2} at byte {at} (not a torch.save file, or one we refuse to interpret)");
            }
        }
    }

    private object Global(string module, string name)
    {
        var full = module + "." + name;
        if (Callables.Contains(full)) return new PyGlobal(module, name);
        if (module == "torch" && (name.EndsWith("Storage", StringComparison.Ordinal) || DTypeNames.Contains(name)))
            return new PyGlobal(module, name);
        throw Bad($"pickle tries to call '{full}', which is not allowed (a weight file may only hold tensors and plain containers)");
    }

    private object? Call(object? fn, object? args)
    {
        if (fn is not PyGlobal g || !Callables.Contains(g.ToString()))
            throw Bad($"pickle tries to call '{Describe(fn)}', which is not allowed (a weight file may only hold tensors and plain containers)");
        var a = (args as PyTuple)?.Items ?? throw Bad($"arguments of {g} are not a tuple");
        switch (g.ToString())
        {
            case "collections.OrderedDict":
            {
                var d = new PyDict();
                if (a.Length > 0 && a[0] is List<object?> pairs)
                    foreach (var p in pairs)
                        if (p is PyTuple { Items.Length: 2 } kv) d.Set(kv.Items[0], kv.Items[1]);
                return d;
            }
            case "torch._utils._rebuild_tensor_v2":
            case "torch._utils._rebuild_tensor":
            {
                if (a.Length < 4 || a[0] is not StorageRef storage || a[1] is not long offset)
                    throw Bad($"{g} called with unexpected arguments");
                var shape = Longs(a[2], "size");
                var strides = Longs(a[3], "stride");
                if (shape.Length != strides.Length) throw Bad($"tensor with size {DTypes.FormatShape(shape)} and stride {DTypes.FormatShape(strides)}");
                return new TensorRef(storage, offset, shape, strides);
            }
            case "torch._utils._rebuild_parameter":
            case "torch._utils._rebuild_parameter_with_state":
                return a.Length > 0 && a[0] is TensorRef t ? t : throw Bad($"{g} called without a tensor");
            case "torch.Size":
                return a.Length > 0 && a[0] is PyTuple size ? size : new PyTuple([]);
            case "_codecs.encode":
                return a.Length > 0 && a[0] is string s ? Encoding.Latin1.GetBytes(s) : throw Bad("_codecs.encode without a string");
            default:
                return new PyPlaceholder(g.ToString(), a.Length > 0 ? a[0] : null);
        }
    }

    private object PersistentLoad(object? pid)
    {
        if (pid is not PyTuple { Items: [string kind, PyGlobal type, string key, string location, long numel, ..] })
            throw Bad($"unexpected persistent id {Describe(pid)} (expected ('storage', torch.XStorage, key, location, numel))");
        if (kind != "storage") throw Bad($"unexpected persistent id kind '{kind}'");
        var dtype = type.Module == "torch" ? DTypes.FromTorchStorage(type.Name) : null;
        if (dtype is null) throw Bad($"storage '{key}' has type {type}, which is not supported");
        return numel >= 0 ? new StorageRef(key, dtype.Value, numel, location) : throw Bad($"storage '{key}' has negative size {numel}");
    }

    private long[] Longs(object? o, string what) => o is PyTuple t
        ? t.Items.Select(i => i is long v ? v : throw Bad($"tensor {what} holds a non-integer")).ToArray()
        : throw Bad($"tensor {what} is not a tuple");

    /// <summary>
    /// A short description of a pickled value for messages: at most 3 levels deep, 6 items per
    /// container and 80 characters per string. (Values nest as deep as the pickle says, and
    /// record ToString or an unbounded recursion over them overflows the stack or runs for minutes.)
    /// </summary>
    internal static string Describe(object? o, int depth = 0)
    {
        const int maxItems = 6;
        string Items(IEnumerable<object?> items, int count)
            => string.Join(", ", items.Take(maxItems).Select(i => Describe(i, depth + 1))) + (count > maxItems ? ", ..." : "");
        return o switch
        {
            null => "None",
            _ when o == PyDict.NoneKey => "None",
            string s => "'" + (s.Length <= 80 ? s : s[..80] + "...") + "'",
            long or double or bool or BigInteger => Convert.ToString(o, System.Globalization.CultureInfo.InvariantCulture) is { Length: <= 80 } n ? n : "<big int>",
            _ when depth >= 3 => "...",
            PyTuple t => "(" + Items(t.Items, t.Items.Length) + ")",
            List<object?> l => "[" + Items(l, l.Count) + "]",
            PyDict d => "{" + string.Join(", ", d.Take(maxItems).Select(kv => Describe(kv.Key, depth + 1) + ": " + Describe(kv.Value, depth + 1))) + (d.Count > maxItems ? ", ..." : "") + "}",
            PyGlobal g => g.ToString(),
            PyPlaceholder p => p.Type + "(" + Describe(p.State, depth + 1) + ")",
            StorageRef r => $"storage '{(r.Key.Length <= 80 ? r.Key : r.Key[..80] + "...")}'",
            TensorRef => "tensor",
            byte[] b => $"<{b.Length} bytes>",
            _ => o.GetType().Name,
        };
    }

    private object ReadLong(int n)
    {
        var v = new BigInteger(Take(n), isUnsigned: false, isBigEndian: false);
        return v >= long.MinValue && v <= long.MaxValue ? (object)(long)v : v;
    }

    private PyDict SetItems(PyDict d, List<object?> items)
    {
        if (items.Count % 2 != 0) throw Bad("dict items with an odd count");
        for (var i = 0; i < items.Count; i += 2) d.Set(items[i], items[i + 1]);
        return d;
    }

    private int ReadLength(long n)
    {
        if (n < 0 || n > _data.Length - _pos) throw Bad($"length {n} at byte {_pos} runs past the end of the pickle");
        return (int)n;
    }

    private byte ReadByte()
    {
        if (_pos >= _data.Length) throw Bad("pickle ends without STOP (truncated)");
        return _data[_pos++];
    }

    private ReadOnlySpan<byte> Take(int n)
    {
        if (n < 0 || n > _data.Length - _pos) throw Bad("pickle ends in the middle of an instruction (truncated)");
        var s = _data.AsSpan(_pos, n);
        _pos += n;
        return s;
    }

    private string ReadLine()
    {
        var end = Array.IndexOf(_data, (byte)'\n', _pos, Math.Min(1024, _data.Length - _pos));
        if (end < 0) throw Bad("GLOBAL name not terminated within 1024 bytes");
        var s = Encoding.UTF8.GetString(_data, _pos, end - _pos);
        _pos = end + 1;
        return s;
    }

    private string Utf8(int n)
    {
        try { return new UTF8Encoding(false, true).GetString(Take(n)); }
        catch (DecoderFallbackException ex) { throw new MiniGptWeightsException($"{_file}: invalid UTF-8 string in pickle", _file, null, ex); }
    }

    private string Latin1(int n) => Encoding.Latin1.GetString(Take(n));

    private void Push(object? o)
    {
        if (++_created > MaxValues) throw Bad($"pickle creates more than {MaxValues} values (not a weight file, or a hostile one)");
        PushExisting(o);
    }

    private void PushExisting(object? o)
    {
        if (_stack.Count >= MaxStack) throw Bad("pickle stack too deep");
        _stack.Add(o);
    }

    private object? Pop()
    {
        if (_stack.Count == 0 || (_marks.Count > 0 && _marks.Peek() == _stack.Count)) throw Bad("pickle pops from an empty stack");
        var o = _stack[^1];
        _stack.RemoveAt(_stack.Count - 1);
        return o;
    }

    private object? Peek()
    {
        if (_stack.Count == 0) throw Bad("pickle reads from an empty stack");
        return _stack[^1];
    }

    private List<object?> PopMark()
    {
        if (_marks.Count == 0) throw Bad("pickle uses a MARK that was never set");
        var m = _marks.Pop();
        var items = _stack.GetRange(m, _stack.Count - m);
        _stack.RemoveRange(m, _stack.Count - m);
        return items;
    }

    private void Memoize(long key)
    {
        var value = Peek();
        if (_memo.Count >= MaxValues && !_memo.ContainsKey(key)) throw Bad($"pickle memoizes more than {MaxValues} values");
        _memo[key] = value;
    }

    private object? Memo(long i) => _memo.TryGetValue(i, out var o) ? o : throw Bad($"pickle refers to memo {i}, which was never stored");

    private List<object?> AsList(object? o, string op) => o as List<object?> ?? throw Bad($"{op} on a {o?.GetType().Name ?? "None"}, not a list");

    private PyDict AsDict(object? o, string op) => o as PyDict ?? throw Bad($"{op} on a {o?.GetType().Name ?? "None"}, not a dict");

    private MiniGptWeightsException Bad(string message) => new($"{_file}: {message}", _file);
}
