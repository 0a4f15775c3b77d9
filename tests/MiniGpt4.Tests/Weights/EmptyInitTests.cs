using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using TorchSharp;
using Xunit;

namespace MiniGpt4.Tests.Weights;

public class EmptyInitTests
{
    [Fact]
    public void Layers_have_pytorch_keys_shapes_and_the_requested_dtype()
    {
        var bf = torch.ScalarType.BFloat16;
        using var lin = EmptyInit.Linear(48, 64, hasBias: true, bf);
        using var noBias = EmptyInit.Linear(48, 64, hasBias: false, bf);
        using var ln = EmptyInit.LayerNorm(32, 1e-6, bf);
        using var conv = EmptyInit.Conv2d(3, 32, 14, 14, hasBias: true, bf);
        Shapes(lin, ("weight", [64, 48]), ("bias", [64]));
        Shapes(noBias, ("weight", [64, 48]));
        Shapes(ln, ("weight", [32]), ("bias", [32]));
        Shapes(conv, ("weight", [32, 3, 14, 14]), ("bias", [32]));
        foreach (var m in new torch.nn.Module[] { lin, ln, conv })
            foreach (var (_, t) in m.state_dict())
            {
                Assert.Equal(bf, t.dtype);
                Assert.Equal(DeviceType.CPU, t.device_type);
            }
    }

    private static void Shapes(torch.nn.Module m, params (string Key, long[] Shape)[] expected)
    {
        var sd = m.state_dict();
        Assert.Equal(expected.Select(e => e.Key).Order(), sd.Keys.Order());
        foreach (var (k, s) in expected) Assert.Equal(s, sd[k].shape);
    }

    [Fact]
    public void Empty_layers_compute_correctly_once_loaded()
    {
        using var dir = new TempDir();
        var path = dir.File("w.safetensors");
        var g = new torch.Generator(7);
        using var w = torch.randn([5, 3], generator: g);
        using var b = torch.randn([5], generator: g);
        using var cw = torch.randn([4, 3, 2, 2], generator: g);
        using var cb = torch.randn([4], generator: g);
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor> { ["weight"] = w, ["bias"] = b });
        var convPath = dir.File("c.safetensors");
        SafetensorsWriter.Write(convPath, new Dictionary<string, torch.Tensor> { ["weight"] = cw, ["bias"] = cb });

        using var lin = EmptyInit.Linear(3, 5, true, torch.ScalarType.Float32);
        using (var s = WeightFiles.Open(path)) ModuleLoader.Load(lin, s, LoadRules.Strict);
        using var x = torch.randn([2, 3], generator: g);
        using var y = lin.call(x);
        using var expected = torch.nn.functional.linear(x, w, b);
        TensorAssert.Equal(expected, y);

        using var conv = EmptyInit.Conv2d(3, 4, 2, 2, true, torch.ScalarType.Float32);
        using (var s = WeightFiles.Open(convPath)) ModuleLoader.Load(conv, s, LoadRules.Strict);
        using var img = torch.randn([1, 3, 4, 4], generator: g);
        using var out1 = conv.call(img);
        using var expectedConv = torch.nn.functional.conv2d(img, cw, cb, strides: [2, 2]);
        TensorAssert.Equal(expectedConv, out1);
    }
}

public class EmptyInitScopeTests
{
    [Fact]
    public void Layers_built_inside_a_dispose_scope_survive_it()
    {
        TorchSharp.Modules.Linear lin;
        TorchSharp.Modules.Parameter p;
        using (torch.NewDisposeScope())
        {
            lin = EmptyInit.Linear(3, 4, true, torch.ScalarType.Float32);
            p = EmptyInit.Parameter([7], torch.ScalarType.Float32);
        }
        Assert.False(lin.weight.IsInvalid);
        Assert.False(lin.bias!.IsInvalid);
        Assert.False(p.IsInvalid);
        lin.weight.fill_(1);
        Assert.Equal(12, lin.weight.sum().item<float>());
        lin.Dispose();
        p.Dispose();
    }
}
