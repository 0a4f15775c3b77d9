using System.Buffers.Binary;
using System.Text;
using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using TorchSharp;
using Xunit;

namespace MiniGpt4.Tests.Weights;

public class SafetensorsTests
{
    public static TheoryData<torch.ScalarType> AllDTypes => new()
    {
        torch.ScalarType.Float64, torch.ScalarType.Float32, torch.ScalarType.Float16, torch.ScalarType.BFloat16,
        torch.ScalarType.Int64, torch.ScalarType.Int32, torch.ScalarType.Int16, torch.ScalarType.Int8,
        torch.ScalarType.Byte, torch.ScalarType.Bool,
    };

    private static torch.Tensor Sample(torch.ScalarType dtype, long[] shape, int seed)
    {
        var g = new torch.Generator((ulong)seed);
        using var r = torch.randn(shape, generator: g) * 50;
        return dtype == torch.ScalarType.Bool ? r.gt(0) : r.to(dtype);
    }

    [Theory]
    [MemberData(nameof(AllDTypes))]
    public void Every_dtype_round_trips_through_writer_and_reader(torch.ScalarType dtype)
    {
        using var dir = new TempDir();
        var path = dir.File("t.safetensors");
        using var a = Sample(dtype, [3, 5, 7], 1);
        using var b = Sample(dtype, [1], 2);
        using var scalar = Sample(dtype, [], 3);
        using var empty = torch.empty([0, 4], dtype);
        using var transposed = Sample(dtype, [4, 6], 4).t(); // non-contiguous input is written row-major
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor> { ["b"] = b, ["a.weight"] = a, ["s"] = scalar, ["e"] = empty, ["t"] = transposed });

        var bytes = File.ReadAllBytes(path);
        var hdr = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + hdr) % 8);
        var json = Encoding.UTF8.GetString(bytes, 8, (int)hdr);
        Assert.StartsWith("{\"__metadata__\":{\"format\":\"pt\"}", json);

        using var s = WeightFiles.Open(path);
        Assert.Equal(new[] { "a.weight", "b", "e", "s", "t" }, s.Keys); // ordinal key order
        foreach (var (key, expected) in new[] { ("a.weight", a), ("b", b), ("s", scalar), ("e", empty), ("t", transposed) })
        {
            Assert.True(s.TryGetInfo(key, out var info));
            Assert.Equal(dtype, info.DType);
            Assert.Equal(expected.shape, info.Shape);
            using var viaLoad = s.Load(key);
            TensorAssert.Equal(expected, viaLoad, key);
            using var dst = torch.empty(expected.shape, dtype);
            s.ReadInto(key, dst);
            TensorAssert.Equal(expected, dst, key);
        }
    }

    [Fact]
    public void Data_is_laid_out_in_key_order_and_float_loads_are_zero_copy_views()
    {
        using var dir = new TempDir();
        var path = dir.File("t.safetensors");
        using var x = torch.arange(6, dtype: torch.ScalarType.Float32).reshape(2, 3);
        using var y = torch.arange(4, dtype: torch.ScalarType.BFloat16);
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor> { ["y"] = y, ["x"] = x });
        using var s = (MappedWeightSource)WeightFiles.Open(path);
        Assert.True(s.LocationOf("x").Offset < s.LocationOf("y").Offset);
        using var a = s.Load("x");
        using var b = s.Load("x");
        // A view of a map of the whole file: its storage offset is the tensor's position in the file.
        Assert.Equal(s.LocationOf("x").Offset / 4, a.storage_offset());
        // Each load is its own copy-on-write mapping: writing one changes neither the file nor other loads.
        a.fill_(42);
        using var c = s.Load("x", torch.ScalarType.Float32);
        TensorAssert.Equal(x, c);
        TensorAssert.Equal(x, b);
    }

    [Fact]
    public void Conversion_on_load_casts_to_the_requested_dtype()
    {
        using var dir = new TempDir();
        var path = dir.File("t.safetensors");
        using var h = Sample(torch.ScalarType.Float16, [300, 70], 5);
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor> { ["h"] = h });
        using var s = WeightFiles.Open(path);
        foreach (var dt in new[] { torch.ScalarType.BFloat16, torch.ScalarType.Float32, torch.ScalarType.Float64 })
        {
            using var got = s.Load("h", dt);
            using var expected = h.to(dt);
            TensorAssert.Equal(expected, got);
        }
    }

    [Fact]
    public void Chunked_conversion_handles_tensors_larger_than_a_chunk()
    {
        using var dir = new TempDir();
        var path = dir.File("big.safetensors");
        var n = MappedWeightSource.ChunkBytes / 2 * 2 + 1234; // > 2 chunks of fp16
        using var h = Sample(torch.ScalarType.Float16, [n], 6);
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor> { ["h"] = h });
        using var s = WeightFiles.Open(path);
        using var got = s.Load("h", torch.ScalarType.BFloat16);
        using var expected = h.to(torch.ScalarType.BFloat16);
        TensorAssert.Equal(expected, got);
    }

    [Fact]
    public void Sharded_folder_from_our_writer_reads_back_through_index_and_folder()
    {
        using var dir = new TempDir();
        var tensors = Enumerable.Range(0, 7).ToDictionary(i => $"layers.{i}.weight", i => Sample(torch.ScalarType.BFloat16, [64, 32], 10 + i));
        var whole = dir.File("all.safetensors");
        SafetensorsWriter.Write(whole, tensors);
        string index;
        using (var source = WeightFiles.Open(whole)) index = SafetensorsWriter.WriteSharded(dir.Path, source, maxShardBytes: 3 * 64 * 32 * 2);
        Assert.Equal(dir.File("model.safetensors.index.json"), index);
        Assert.True(File.Exists(dir.File("model-00001-of-00003.safetensors")));
        Assert.True(File.Exists(dir.File("model-00003-of-00003.safetensors")));
        Assert.Contains("\"total_size\": " + 7 * 64 * 32 * 2, File.ReadAllText(index));
        foreach (var open in new[] { index, dir.Path })
        {
            using var s = WeightFiles.Open(open);
            Assert.Equal(7, s.Keys.Count);
            Assert.Contains("3 shards", s.Description);
            foreach (var (k, t) in tensors)
            {
                using var got = s.Load(k);
                TensorAssert.Equal(t, got, k);
            }
        }
        foreach (var t in tensors.Values) t.Dispose();
    }

    [SkippableFact]
    public void Converting_the_fixture_bin_to_safetensors_gives_the_released_file()
    {
        using var dir = new TempDir();
        using var bin = WeightFiles.Open(Fixtures.Require("oracle/tiny/llama/pytorch_model.bin"));
        var path = dir.File("model.safetensors");
        SafetensorsWriter.Write(path, bin);
        // transformers' save_pretrained wrote the fixture: our writer reproduces it byte for byte.
        var ours = File.ReadAllBytes(path);
        var theirs = File.ReadAllBytes(Fixtures.Require("oracle/tiny/llama/model.safetensors"));
        using var a = WeightFiles.Open(path);
        using var b = WeightFiles.Open(Fixtures.Require("oracle/tiny/llama/model.safetensors"));
        Assert.Equal(b.Keys.Order(StringComparer.Ordinal), a.Keys);
        foreach (var k in a.Keys)
        {
            using var x = a.Load(k);
            using var y = b.Load(k);
            TensorAssert.Equal(y, x, k);
        }
        Assert.Equal(theirs, ours);
    }
}
