using System.Text;
using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using TorchSharp;
using Xunit;

namespace MiniGpt4.Tests.Weights;

public class TorchZipTests
{
    [Fact]
    public void Training_checkpoint_yields_the_model_dict_and_skips_optimizer_config_scaler_epoch()
    {
        using var dir = new TempDir();
        var path = dir.File("checkpoint_stage3.pth");
        using var w = torch.arange(12, dtype: torch.ScalarType.Float16).reshape(3, 4);
        using var b = torch.ones(3, dtype: torch.ScalarType.BFloat16);
        using var exp = torch.full(12, 0.5, dtype: torch.ScalarType.Float32);
        var storages = new Dictionary<string, torch.Tensor> { ["0"] = w.view(-1), ["1"] = b, ["2"] = exp };
        var model = new SortedList<string, object?> { ["llama_proj.weight"] = TorchZipWriter.Whole("0", w), ["llama_proj.bias"] = TorchZipWriter.Whole("1", b) };
        var optimizer = new Dictionary<string, object?>
        {
            ["state"] = new Dictionary<string, object?> { ["0"] = new Dictionary<string, object?> { ["step"] = 10L, ["exp_avg"] = TorchZipWriter.Whole("2", exp) } },
            ["param_groups"] = new List<object?> { new Dictionary<string, object?> { ["lr"] = 1e-4, ["betas"] = new object?[] { 0.9, 0.999 }, ["params"] = new List<object?> { 0L, 1L }, ["amsgrad"] = false } },
        };
        var root = new Dictionary<string, object?>
        {
            ["model"] = model, ["optimizer"] = optimizer,
            ["config"] = new Dictionary<string, object?> { ["run"] = new Dictionary<string, object?> { ["seed"] = 42L, ["big"] = 1L << 40, ["neg"] = -5L, ["name"] = "stage3" } },
            ["scaler"] = new Dictionary<string, object?> { ["scale"] = 65536.0, ["_growth_tracker"] = 0L }, ["epoch"] = 3L,
        };
        TorchZipWriter.Write(path, root, storages, stem: "checkpoint_stage3");
        using var s = WeightFiles.Open(path);
        Assert.Equal(new[] { "llama_proj.bias", "llama_proj.weight" }, s.Keys);
        using var gw = s.Load("llama_proj.weight");
        TensorAssert.Equal(w, gw);
        using var gb = s.Load("llama_proj.bias");
        TensorAssert.Equal(b, gb);
    }

    [Fact]
    public void Storage_offsets_shared_storages_and_non_contiguous_views_read_correctly()
    {
        using var dir = new TempDir();
        var path = dir.File("views.pth");
        using var storage = torch.arange(40, dtype: torch.ScalarType.Float32);
        var root = new SortedList<string, object?>
        {
            ["tail"] = new PickledTensor("0", 30, [2, 5], [5, 1]),      // offset view, contiguous
            ["transposed"] = new PickledTensor("0", 2, [3, 4], [1, 3]), // non-contiguous (a .t() view)
            ["whole"] = new PickledTensor("0", 0, [40], [1]),           // same storage, shared
            ["strided"] = new PickledTensor("0", 1, [5], [7]),          // every 7th element
        };
        TorchZipWriter.Write(path, root, new() { ["0"] = storage });
        using var s = WeightFiles.Open(path);
        using var tail = s.Load("tail");
        using var expectedTail = storage.narrow(0, 30, 10).reshape(2, 5);
        TensorAssert.Equal(expectedTail, tail);
        using var tr = s.Load("transposed");
        using var expectedTr = storage.as_strided([3, 4], [1, 3], 2).contiguous();
        TensorAssert.Equal(expectedTr, tr);
        using var st = s.Load("strided", torch.ScalarType.BFloat16);
        using var expectedSt = storage.as_strided([5], [7], 1).to(torch.ScalarType.BFloat16);
        TensorAssert.Equal(expectedSt, st);
        using var whole = s.Load("whole");
        TensorAssert.Equal(storage, whole);
    }

    [SkippableFact]
    public void Sharded_bin_through_an_index_json_pointing_at_the_fixture()
    {
        var bin = Fixtures.Require("oracle/tiny/llama/pytorch_model.bin");
        using var dir = new TempDir();
        // Two "shards": the fixture file (linked) and one we write with a part of the keys moved there.
        using var fixture = WeightFiles.Open(bin);
        var moved = fixture.Keys.Where(k => k.StartsWith("model.layers.1.", StringComparison.Ordinal)).ToList();
        var storages = new Dictionary<string, torch.Tensor>();
        var dict = new SortedList<string, object?>();
        foreach (var (k, i) in moved.Select((k, i) => (k, i)))
        {
            var t = fixture.Load(k);
            storages[i.ToString()] = t.view(-1);
            dict[k] = TorchZipWriter.Whole(i.ToString(), t);
        }
        TorchZipWriter.Write(dir.File("pytorch_model-00002-of-00002.bin"), dict, storages, stem: "pytorch_model-00002-of-00002");
        File.CreateSymbolicLink(dir.File("pytorch_model-00001-of-00002.bin"), bin);
        var map = string.Join(",\n", fixture.Keys.Select(k =>
            $"\"{k}\": \"pytorch_model-0000{(moved.Contains(k) ? 2 : 1)}-of-00002.bin\""));
        File.WriteAllText(dir.File("pytorch_model.bin.index.json"), "{\"metadata\": {\"total_size\": 1}, \"weight_map\": {" + map + "}}");

        using var s = WeightFiles.Open(dir.Path); // the folder: no safetensors, so the .bin index
        Assert.Equal(fixture.Keys.Count, s.Keys.Count);
        Assert.Contains("2 shards", s.Description);
        foreach (var k in fixture.Keys)
        {
            using var a = fixture.Load(k);
            using var b = s.Load(k);
            TensorAssert.Equal(a, b, k);
        }
        foreach (var t in storages.Values) t.Dispose();
    }
}
