using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using MiniGpt4.Weights;
using TorchSharp;
using Xunit;

namespace MiniGpt4.Tests.Weights;

public class PickleReaderTests
{
    private static byte[] P(params byte[][] parts) => [0x80, 2, .. parts.SelectMany(p => p), (byte)'.'];
    private static byte[] U(string s) { var b = Encoding.UTF8.GetBytes(s); var n = new byte[4]; BinaryPrimitives.WriteInt32LittleEndian(n, b.Length); return [(byte)'X', .. n, .. b]; }
    private static byte[] F(double d) { var b = new byte[9]; b[0] = (byte)'G'; BinaryPrimitives.WriteDoubleBigEndian(b.AsSpan(1), d); return b; }

    [Fact]
    public void Scalars_and_containers_as_python_writes_them()
    {
        // {'a': -2, 'b': 2**70, 'c': 0.25, 'd': (True, None, 'é'), 'e': [1, 300, 70000], 'f': b'xy', 'a': 5}
        var pickle = P([(byte)'}', (byte)'('],
            U("a"), [0x8a, 1, 0xfe],
            U("b"), [0x8a, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0x40],
            U("c"), F(0.25),
            U("d"), [0x88, (byte)'N'], U("é"), [0x87],
            U("e"), [(byte)']', (byte)'(', (byte)'K', 1, (byte)'M', 0x2c, 0x01, (byte)'J', 0x70, 0x11, 0x01, 0x00, (byte)'e'],
            U("f"), [(byte)'C', 2, (byte)'x', (byte)'y'],
            U("a"), [(byte)'K', 5],
            [(byte)'u']);
        var d = Assert.IsType<PyDict>(PickleReader.Load(pickle, "t"));
        Assert.Equal(new object?[] { "a", "b", "c", "d", "e", "f" }, d.Keys);
        Assert.Equal(5L, d["a"]); // a later duplicate replaces in place
        Assert.Equal(BigInteger.Pow(2, 70), d["b"]);
        Assert.Equal(0.25, d["c"]);
        Assert.Equal(new object?[] { true, null, "é" }, Assert.IsType<PyTuple>(d["d"]).Items);
        Assert.Equal(new object?[] { 1L, 300L, 70000L }, Assert.IsType<List<object?>>(d["e"]));
        Assert.Equal("xy"u8.ToArray(), d["f"]);
    }

    [Fact]
    public void Memo_shares_objects_and_tensors_name_their_storage()
    {
        byte[] Storage(string key) => [(byte)'(', .. U("storage"), .. "ctorch\nHalfStorage\n"u8.ToArray(), .. U(key), .. U("cpu"), (byte)'K', 6, (byte)'t', (byte)'Q'];
        byte[] Tensor(string key, byte offset) => [.. "ctorch._utils\n_rebuild_tensor_v2\n"u8.ToArray(), (byte)'(', .. Storage(key), (byte)'K', offset,
            (byte)'K', 2, 0x85, (byte)'K', 1, 0x85, 0x89, .. "ccollections\nOrderedDict\n"u8.ToArray(), (byte)')', (byte)'R', (byte)'t', (byte)'R'];
        var pickle = P([(byte)'}', (byte)'('], U("x"), Tensor("0", 0), [(byte)'q', 1], U("y"), Tensor("0", 4), U("z"), [(byte)'h', 1], [(byte)'u']);
        var d = Assert.IsType<PyDict>(PickleReader.Load(pickle, "t"));
        var x = Assert.IsType<TensorRef>(d["x"]);
        var y = Assert.IsType<TensorRef>(d["y"]);
        Assert.Same(x, d["z"]);
        Assert.Equal(x.Storage, y.Storage);
        Assert.Equal(torch.ScalarType.Float16, x.Storage.DType);
        Assert.Equal(4, y.StorageOffset);
        Assert.Equal(new long[] { 2 }, y.Shape);
    }

    [Fact]
    public void Huge_dicts_and_unterminated_globals_stay_linear()
    {
        // 200k SETITEMS entries (a quadratic dict would take many minutes here).
        var parts = new List<byte[]> { new[] { (byte)'}', (byte)'(' } };
        for (var i = 0; i < 200_000; i++) { parts.Add(U("k" + i)); parts.Add([(byte)'K', 1]); }
        parts.Add([(byte)'u']);
        var d = Assert.IsType<PyDict>(PickleReader.Load(P([.. parts]), "t"));
        Assert.Equal(200_000, d.Count);
        byte[] noNewline = [0x80, 2, (byte)'c', .. Enumerable.Repeat((byte)'a', 5000)];
        Assert.Contains("not terminated", Assert.Throws<MiniGptWeightsException>(() => PickleReader.Load(noNewline, "t")).Message);
    }
}
