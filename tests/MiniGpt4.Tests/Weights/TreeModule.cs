using TorchSharp;
using TorchSharp.Modules;

namespace MiniGpt4.Tests.Weights;

/// <summary>A module built from a list of dotted keys, so tests can mirror any checkpoint's state_dict.</summary>
internal sealed class TreeModule : torch.nn.Module
{
    private TreeModule(string name) : base(name) { }

    /// <summary>Parameters (floating) and persistent buffers (integer) named by <paramref name="keys"/>, filled with <paramref name="fill"/>.</summary>
    public static TreeModule Build(IEnumerable<(string Key, long[] Shape, torch.ScalarType DType)> keys, double fill = -7)
    {
        var root = new TreeModule("root");
        foreach (var (key, shape, dtype) in keys)
        {
            var parts = key.Split('.');
            var node = root;
            for (var i = 0; i < parts.Length - 1; i++)
            {
                var child = node.named_children().FirstOrDefault(c => c.name == parts[i]).module as TreeModule;
                if (child is null) { child = new TreeModule(parts[i]); node.register_module(parts[i], child); }
                node = child;
            }
            var t = torch.full(shape, fill, dtype: dtype);
            if (dtype is torch.ScalarType.Float32 or torch.ScalarType.BFloat16 or torch.ScalarType.Float16 or torch.ScalarType.Float64)
                node.register_parameter(parts[^1], new Parameter(t, requires_grad: false));
            else
                node.register_buffer(parts[^1], t);
        }
        return root;
    }
}
