using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Vision;

/// <summary>
/// Presents a LAVIS-named EVA checkpoint the way a Hugging Face Blip2ForConditionalGeneration file names it
/// (<c>vision_model.</c> prefix), with q_bias / v_bias fused into <c>self_attn.qkv.bias</c>
/// = cat(q_bias, 0, v_bias) as the converter writes it. Test-side, so the HF path runs on the oracle's weights.
/// </summary>
internal sealed class HuggingFaceVisionView : IWeightSource
{
    private readonly IWeightSource _inner;
    private readonly Dictionary<string, string> _toInner = new(StringComparer.Ordinal);
    private readonly Dictionary<string, (string Q, string V)> _fused = new(StringComparer.Ordinal);
    private readonly List<string> _keys = [];

    public HuggingFaceVisionView(IWeightSource inner)
    {
        _inner = inner;
        foreach (var k in inner.Keys)
        {
            var parts = k.Split('.');
            string? hf = k switch
            {
                "cls_token" => "embeddings.class_embedding",
                "pos_embed" => "embeddings.position_embedding",
                "patch_embed.proj.weight" => "embeddings.patch_embedding.weight",
                "patch_embed.proj.bias" => "embeddings.patch_embedding.bias",
                _ when parts[0] == "blocks" => Block(parts),
                _ => throw new InvalidOperationException("unexpected key " + k),
            };
            if (hf is null) continue;
            _toInner["vision_model." + hf] = k;
            _keys.Add("vision_model." + hf);
        }
    }

    private string? Block(string[] p)
    {
        var layer = $"encoder.layers.{p[1]}.";
        var rest = string.Join('.', p[2..]);
        switch (rest)
        {
            case "attn.q_bias":
                var fused = "vision_model." + layer + "self_attn.qkv.bias";
                _fused[fused] = ($"blocks.{p[1]}.attn.q_bias", $"blocks.{p[1]}.attn.v_bias");
                _keys.Add(fused);
                return null;
            case "attn.v_bias":
                return null;
        }
        return layer + rest
            .Replace("norm1.", "layer_norm1.").Replace("norm2.", "layer_norm2.")
            .Replace("attn.proj.", "self_attn.projection.").Replace("attn.qkv.", "self_attn.qkv.");
    }

    public string Description => "HF view of " + _inner.Description;

    public IReadOnlyCollection<string> Keys => _keys;

    public bool TryGetInfo(string key, out TensorInfo info)
    {
        if (_fused.TryGetValue(key, out var qv) && _inner.TryGetInfo(qv.Q, out var q))
        {
            info = q with { Key = key, Shape = [3 * q.Shape[0]] };
            return true;
        }
        if (_toInner.TryGetValue(key, out var k) && _inner.TryGetInfo(k, out var i))
        {
            info = i with { Key = key };
            return true;
        }
        info = null!;
        return false;
    }

    public Tensor Load(string key, ScalarType? dtype = null, Device? device = null)
    {
        if (_fused.TryGetValue(key, out var qv))
        {
            using var q = _inner.Load(qv.Q, dtype, device);
            using var v = _inner.Load(qv.V, dtype, device);
            using var zero = zeros_like(v);
            return cat([q, zero, v]);
        }
        return _inner.Load(_toInner[key], dtype, device);
    }

    public long ReadInto(string key, Tensor destination)
    {
        using var t = Load(key, destination.dtype, destination.device);
        using (no_grad()) destination.copy_(t);
        return destination.numel() * destination.element_size();
    }

    public void Dispose() => _inner.Dispose();
}
