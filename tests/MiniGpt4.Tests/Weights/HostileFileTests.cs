using System.Buffers.Binary;
using System.Text;
using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using TorchSharp;
using Xunit;

namespace MiniGpt4.Tests.Weights;

/// <summary>Corrupt and malicious files: each must give a clear MiniGptWeightsException, never a crash or code execution.</summary>
public class HostileFileTests
{
    private static byte[] Safetensors(string header, int dataBytes, long? declaredLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var file = new byte[8 + h.Length + dataBytes];
        BinaryPrimitives.WriteUInt64LittleEndian(file, (ulong)(declaredLength ?? h.Length));
        h.CopyTo(file, 8);
        return file;
    }

    private static MiniGptWeightsException OpenFails(string path)
    {
        var ex = Assert.Throws<MiniGptWeightsException>(() => { using var s = WeightFiles.Open(path); });
        Assert.Contains(Path.GetFileName(path), ex.Message);
        Assert.Equal(Path.GetFullPath(path), ex.File);
        return ex;
    }

    private static MiniGptWeightsException OpenFails(TempDir dir, byte[] content, string name = "bad.safetensors")
    {
        var path = dir.File(name);
        File.WriteAllBytes(path, content);
        return OpenFails(path);
    }

    [Theory]
    [InlineData("""{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}}""", 8, "outside the 8-byte data section")]            // truncated data
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}""", 16, "overlap")]
    [InlineData("""{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}""", 2, "dtype 'F8_E4M3', which is not supported")]
    [InlineData("""{"a":{"dtype":"U16","shape":[2],"data_offsets":[0,4]}}""", 4, "not supported")]
    [InlineData("""{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}""", 8, "has 8 bytes but shape [3] Float32 needs 12")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}""", 8, "invalid data_offsets")]
    // Found by fuzzing: non-numeric offsets threw InvalidOperationException from JsonElement.TryGetInt64.
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":["0",8]}}""", 8, "invalid data_offsets")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,null]}}""", 8, "invalid data_offsets")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,[8]]}}""", 8, "invalid data_offsets")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0.5,8]}}""", 8, "invalid data_offsets")]
    // Escaped lone surrogates: JsonElement.GetString / JsonProperty.Name throw InvalidOperationException.
    [InlineData("""{"\ud800":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, "not valid JSON")]
    [InlineData("""{"a":{"dtype":"F\udc002","shape":[2],"data_offsets":[0,8]}}""", 8, "not valid JSON")]
    [InlineData("""{"__metadata__":{"format":"\ud800"}}""", 0, "not valid JSON")]
    [InlineData("""{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}""", 8, "invalid shape")]
    [InlineData("""{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}""", 8, "overflows")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2]}}""", 8, "no data_offsets")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""", 8, "appears twice")]
    [InlineData("""{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]""", 8, "not valid JSON")]
    [InlineData("""[1,2,3]""", 0, "not a JSON object")]
    [InlineData("""{"__metadata__":{"format":1}}""", 0, "not a string")]
    public void Corrupt_safetensors_headers_are_refused_with_a_reason(string header, int dataBytes, string expected)
    {
        using var dir = new TempDir();
        var ex = OpenFails(dir, Safetensors(header, dataBytes));
        Assert.Contains(expected, ex.Message);
    }

    [Fact]
    public void Safetensors_header_length_beyond_the_file_or_huge_or_file_too_short()
    {
        using var dir = new TempDir();
        Assert.Contains("beyond the end", OpenFails(dir, Safetensors("{}", 0, declaredLength: 1000)).Message);
        Assert.Contains("cap", OpenFails(dir, Safetensors("{}", 0, declaredLength: 200L << 20)).Message);
        Assert.Contains("cap", OpenFails(dir, Safetensors("{}", 0, declaredLength: long.MaxValue)).Message);
        Assert.Contains("too short", OpenFails(dir, [1, 2, 3]).Message);
    }

    [Fact]
    public void Truncated_safetensors_file_is_refused()
    {
        using var dir = new TempDir();
        var good = dir.File("good.safetensors");
        using var t = torch.ones(100, 100);
        SafetensorsWriter.Write(good, new Dictionary<string, torch.Tensor> { ["w"] = t });
        var bytes = File.ReadAllBytes(good);
        Assert.Contains("truncated", OpenFails(dir, bytes[..(bytes.Length / 2)]).Message);
    }

    // A pickle that would run a shell command under Python's pickle.load.
    private static byte[] Pickle(params byte[][] parts) => [0x80, 2, .. parts.SelectMany(p => p), (byte)'.'];
    private static byte[] A(string s) => Encoding.ASCII.GetBytes(s);
    private static byte[] U(string s) { var b = Encoding.UTF8.GetBytes(s); var n = new byte[4]; BinaryPrimitives.WriteInt32LittleEndian(n, b.Length); return [(byte)'X', .. n, .. b]; }

    public static TheoryData<string, byte[], string> HostilePickles => new()
    {
        { "os.system", Pickle(A("cos\nsystem\n"), U("touch /tmp/pwned"), [0x85, (byte)'R']), "pickle tries to call 'os.system'" },
        { "posix.system", Pickle(A("cposix\nsystem\n"), U("id"), [0x85, (byte)'R']), "'posix.system'" },
        { "builtins.eval", Pickle(A("cbuiltins\neval\n"), U("1+1"), [0x85, (byte)'R']), "'builtins.eval'" },
        { "builtins.getattr", Pickle(A("cbuiltins\ngetattr\n"), [(byte)'N'], U("x"), [0x86, (byte)'R']), "'builtins.getattr'" },
        { "torch.load", Pickle(A("ctorch\nload\n"), U("x"), [0x85, (byte)'R']), "'torch.load'" },
        { "subprocess via STACK_GLOBAL", Pickle([0x8c, 10], A("subprocess"), [0x8c, 5], A("Popen"), [0x93], U("ls"), [0x85, (byte)'R']), "'subprocess.Popen'" },
        { "calling a storage type", Pickle(A("ctorch\nFloatStorage\n"), U("x"), [0x85, (byte)'R']), "pickle tries to call 'torch.FloatStorage'" },
        { "INST opcode", Pickle(A("ios\nsystem\n"), [(byte)'(']), "unsupported pickle opcode 0x69" },
        { "NEWOBJ of a non-allowed class", Pickle(A("ctorch\nfloat16\n"), [(byte)')', 0x81]), "pickle tries to call 'torch.float16'" },
        { "no STOP", [0x80, 2, (byte)'}'], "truncated" },
        { "undefined memo", Pickle([(byte)'h', 7]), "memo 7" },
        { "string past the end", [0x80, 2, (byte)'X', 0xff, 0xff, 0xff, 0x7f, (byte)'a'], "past the end" },
        { "pop empty stack", Pickle([(byte)'0']), "empty stack" },
        { "not a dict", Pickle(U("just a string")), "no state dict" },
        { "bad persistent id", Pickle(A("ctorch._utils\n_rebuild_tensor_v2\n"), [(byte)'('], U("nope"), [(byte)'Q']), "unexpected persistent id" },
        // The message used to describe the id recursively, without bound: 200 000 nested tuples overflowed the stack.
        { "deeply nested persistent id", Pickle([(byte)'N'], Enumerable.Repeat((byte)0x85, 200_000).ToArray(), [(byte)'Q']), "unexpected persistent id (((...)))" },
        // ... and the value called through record ToString: 100 000 nested torch.device(...) placeholders.
        { "deeply nested call target", NestedDeviceCall(100_000), "pickle tries to call 'torch.device(torch.device(torch.device(...)))'" },
    };

    /// <summary>torch.device(torch.device(... None ...)) nested <paramref name="depth"/> times, then called.</summary>
    private static byte[] NestedDeviceCall(int depth)
    {
        var body = new List<byte>();
        body.AddRange(A("ctorch\ndevice\n")); body.AddRange([(byte)'q', 0, (byte)'N']);
        for (var i = 0; i < depth; i++)
            body.AddRange([(byte)'q', 1, (byte)'0', (byte)'h', 0, (byte)'h', 1, 0x85, (byte)'R']); // x = device((x,))
        body.AddRange([(byte)')', (byte)'R']); // x()
        return Pickle(body.ToArray());
    }

    [Fact]
    public void Pickles_of_millions_of_one_byte_values_are_refused_within_a_memory_budget()
    {
        // Millions of one- or two-byte opcodes that each keep a new object alive: the reader used to
        // allocate about 0.5 to 1 GB for each of these 8-16 MB pickles.
        using var dir = new TempDir();
        foreach (var (name, pickle, expected) in new[]
                 {
                     ("stacked dicts", Pickle(Enumerable.Repeat((byte)'}', 8 << 20).ToArray()), "stack too deep"),
                     ("listed dicts", Pickle([(byte)']'], Enumerable.Range(0, 4 << 20).SelectMany(_ => new[] { (byte)'}', (byte)'a' }).ToArray()), "creates more than"),
                     ("memo", Pickle([(byte)'}'], Enumerable.Repeat((byte)0x94, 8 << 20).ToArray()), "memoizes more than"),
                 })
        {
            var path = dir.File(name + ".pth");
            TorchZipWriter.WriteZip(path, "big", pickle, new());
            var (thrown, use) = MiniGpt4.Tests.Fuzzing.MemoryProbe.MeasureThrow(() => { using var s = WeightFiles.Open(path); });
            var ex = Assert.IsType<MiniGptWeightsException>(thrown);
            Assert.Contains(expected, ex.Message);
            Assert.True(use.ManagedBytes < (320L << 20), $"{name}: {use}");
        }
    }

    [Theory]
    [MemberData(nameof(HostilePickles))]
    public void Hostile_pickles_are_refused_without_executing_anything(string name, byte[] pickle, string expected)
    {
        using var dir = new TempDir();
        var path = dir.File("evil.pth");
        TorchZipWriter.WriteZip(path, "evil", pickle, new());
        var ex = OpenFails(path);
        Assert.Contains(expected, ex.Message);
        Assert.False(File.Exists("/tmp/pwned"), name);
    }

    private static (Dictionary<string, torch.Tensor> Storages, SortedList<string, object?> Root) OneTensor()
    {
        var t = torch.arange(6, dtype: torch.ScalarType.Float32);
        return (new() { ["0"] = t }, new() { ["w"] = new PickledTensor("0", 0, [2, 3], [3, 1]) });
    }

    [Fact]
    public void Zip_with_a_missing_storage_record_names_tensor_and_record()
    {
        using var dir = new TempDir();
        var (storages, root) = OneTensor();
        var path = dir.File("missing.pth");
        TorchZipWriter.Write(path, root, storages, stem: "missing", omitRecords: ["missing/data/0"]);
        var ex = OpenFails(path);
        Assert.Contains("tensor 'w' refers to record 'missing/data/0', which is missing", ex.Message);
        Assert.Equal("w", ex.Key);
    }

    [Fact]
    public void Compressed_storage_and_tensor_beyond_its_storage_are_refused()
    {
        using var dir = new TempDir();
        var (storages, root) = OneTensor();
        var compressed = dir.File("compressed.pth");
        TorchZipWriter.Write(compressed, root, storages, compressStorages: true);
        Assert.Contains("compressed", OpenFails(compressed).Message);

        var beyond = dir.File("beyond.pth");
        TorchZipWriter.Write(beyond, new SortedList<string, object?> { ["w"] = new PickledTensor("0", 4, [2, 3], [3, 1]) }, storages);
        Assert.Contains("reaches beyond its storage of 6 elements", OpenFails(beyond).Message);
    }

    [Fact]
    public void Truncated_zip_and_legacy_non_zip_pth_are_refused()
    {
        using var dir = new TempDir();
        var (storages, root) = OneTensor();
        var good = dir.File("good.pth");
        TorchZipWriter.Write(good, root, storages);
        var bytes = File.ReadAllBytes(good);
        for (var cut = 10; cut < bytes.Length; cut += Math.Max(1, bytes.Length / 23))
            OpenFails(dir, bytes[..cut], $"cut{cut}.pth");
        // The pre-1.6 torch format is a bare pickle, not a zip.
        Assert.Contains("not a zip archive", OpenFails(dir, Pickle([(byte)'}']), "legacy.pth").Message);
    }

    [Fact]
    public void Bad_index_json_is_refused_with_the_reason()
    {
        using var dir = new TempDir();
        using var t = torch.ones(2);
        SafetensorsWriter.Write(dir.File("model-00001-of-00001.safetensors"), new Dictionary<string, torch.Tensor> { ["a"] = t });
        var index = dir.File("model.safetensors.index.json");
        void Check(string json, string expected)
        {
            File.WriteAllText(index, json);
            Assert.Contains(expected, Assert.Throws<MiniGptWeightsException>(() => WeightFiles.Open(index)).Message);
        }
        Check("{\"weight_map\": {\"a\": ", "not valid JSON");
        Check("{\"metadata\": {}}", "no \"weight_map\"");
        Check("{\"weight_map\": {\"a\": \"model-00002-of-00002.safetensors\"}}", "not found");
        Check("{\"weight_map\": {\"a\": \"../../etc/passwd\"}}", "not a file name in the index's folder");
        Check("{\"weight_map\": {\"b\": \"model-00001-of-00001.safetensors\"}}", "tensor 'b' is not in its shard");
        Check("{\"weight_map\": {\"a\": 3}}", "not a file name");
        Check("{\"weight_map\": {\"a\": \"\\ud800.safetensors\"}}", "not valid JSON"); // escaped lone surrogate
    }

    [Fact]
    public void Folder_without_weights_and_missing_file_are_refused()
    {
        using var dir = new TempDir();
        Assert.Contains("no weights found", Assert.Throws<MiniGptWeightsException>(() => WeightFiles.Open(dir.Path)).Message);
        Assert.Contains("not found", Assert.Throws<MiniGptWeightsException>(() => WeightFiles.Open(dir.File("nope.safetensors"))).Message);
    }

    [SkippableTheory]
    [InlineData("oracle/tiny/pretrained_minigpt4.pth")]
    [InlineData("oracle/tiny/llama/model.safetensors")]
    [InlineData("oracle/tiny/eva_vit_g.pth")]
    public void Random_corruption_never_escapes_as_anything_but_MiniGptWeightsException(string relative)
    {
        var original = File.ReadAllBytes(Fixtures.Require(relative));
        using var dir = new TempDir();
        var rng = new Random(1234);
        var name = Path.GetFileName(relative);
        for (var trial = 0; trial < 150; trial++)
        {
            var bytes = (byte[])original.Clone();
            // Mostly hit the headers (zip directory / pickle / JSON), where parsing happens.
            var inHeader = rng.Next(3) > 0;
            for (var k = rng.Next(1, 6); k > 0; k--)
            {
                var at = inHeader ? (rng.Next(2) == 0 ? rng.Next(Math.Min(bytes.Length, 1200)) : bytes.Length - 1 - rng.Next(Math.Min(bytes.Length, 600))) : rng.Next(bytes.Length);
                bytes[at] = (byte)rng.Next(256);
            }
            var path = dir.File($"{trial}-{name}");
            File.WriteAllBytes(path, bytes);
            try
            {
                using var s = WeightFiles.Open(path);
                foreach (var key in s.Keys)
                {
                    using var t = s.Load(key);
                    using var f = s.Load(key, torch.ScalarType.Float64);
                }
            }
            catch (MiniGptWeightsException) { }
            File.Delete(path);
        }
    }
}

public class ModifiedWhileOpenTests
{
    [Fact]
    public void File_truncated_after_open_gives_an_error_not_a_crash()
    {
        using var dir = new TempDir();
        var path = dir.File("w.safetensors");
        using var a = torch.ones(1000);
        using var b = torch.ones(1000);
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor> { ["a"] = a, ["b"] = b });
        using var s = WeightFiles.Open(path);
        using (var fs = new FileStream(path, FileMode.Open, FileAccess.Write)) fs.SetLength(fs.Length - 2000);
        using var first = s.Load("a"); // still inside the file
        Assert.Equal(1000, first.sum().item<float>());
        var ex = Assert.Throws<MiniGptWeightsException>(() => s.Load("b"));
        Assert.Contains("truncated", ex.Message);
        using var dst = torch.empty(1000, dtype: torch.ScalarType.BFloat16);
        Assert.Throws<MiniGptWeightsException>(() => s.ReadInto("b", dst));
    }
}
