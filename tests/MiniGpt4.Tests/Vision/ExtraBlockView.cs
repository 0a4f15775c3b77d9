using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Vision;

/// <summary>
/// The EVA checkpoint with one more block appended (<c>blocks.{n}.*</c>, random values of block 0's shapes),
/// the way the real eva_vit_g.pth stores a 40th block the model must not use.
/// </summary>
internal sealed class ExtraBlockView : IWeightSource
{
    private readonly IWeightSource _inner;
    private readonly Dictionary<string, string> _extra = new(StringComparer.Ordinal); // extra key -> block-0 key
    private readonly List<string> _keys;

    public ExtraBlockView(IWeightSource inner, int newBlock)
    {
        _inner = inner;
        _keys = [.. inner.Keys];
        foreach (var k in inner.Keys.Where(k => k.StartsWith("blocks.0.", StringComparison.Ordinal)).ToList())
        {
            var extra = $"blocks.{newBlock}." + k["blocks.0.".Length..];
            _extra[extra] = k;
            _keys.Add(extra);
        }
    }

    public string Description => "extra-block view of " + _inner.Description;

    public IReadOnlyCollection<string> Keys => _keys;

    public bool TryGetInfo(string key, out TensorInfo info)
    {
        if (_extra.TryGetValue(key, out var k) && _inner.TryGetInfo(k, out var i)) { info = i with { Key = key }; return true; }
        return _inner.TryGetInfo(key, out info);
    }

    public Tensor Load(string key, ScalarType? dtype = null, Device? device = null)
    {
        if (!_extra.TryGetValue(key, out var k)) return _inner.Load(key, dtype, device);
        _inner.TryGetInfo(k, out var info);
        return randn(info.Shape, dtype ?? info.DType, device ?? CPU) * 3;
    }

    public long ReadInto(string key, Tensor destination)
    {
        if (!_extra.ContainsKey(key)) return _inner.ReadInto(key, destination);
        using var t = Load(key, destination.dtype, destination.device);
        using (no_grad()) destination.copy_(t);
        return destination.numel() * destination.element_size();
    }

    public void Dispose() => _inner.Dispose();
}
