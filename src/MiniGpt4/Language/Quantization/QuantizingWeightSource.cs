using MiniGpt4.Weights;
using TorchSharp;

namespace MiniGpt4.Language.Quantization;

/// <summary>
/// A LLaMA weight source seen quantized: each block projection's <c>….weight</c> (and the head's, or for a tied model
/// the embedding table as the head) becomes <c>….qN_weight</c> and <c>….qN_scales</c>, computed from the float weight
/// when read; every other tensor passes through. <c>convert --dtype int8|int4</c> writes it, and quantize-at-load reads
/// it, so both produce the same bytes. Quantizing is done once per layer (the scales read right after the weight come
/// from the same pass).
/// </summary>
internal sealed class QuantizingWeightSource : IWeightSource
{
    private readonly IWeightSource _inner;
    private readonly LlamaQuantization _plan;
    private readonly Dictionary<string, (string Source, QuantFormat Format, bool Scales, TensorInfo Info)> _quantized = new(StringComparer.Ordinal);
    private readonly List<string> _keys = [];
    private (string Source, QuantFormat Format, torch.Tensor Packed, torch.Tensor Scales)? _last;

    /// <summary>Wraps <paramref name="inner"/> (a float LLaMA source, Hugging Face keys; not owned) with <paramref name="plan"/>.</summary>
    public QuantizingWeightSource(IWeightSource inner, LlamaQuantization plan, bool tiedHead)
    {
        _inner = inner;
        _plan = plan;
        foreach (var key in inner.Keys)
        {
            var format = FormatOf(key);
            if (format == QuantFormat.None || !inner.TryGetInfo(key, out var info) || info.Shape.Length != 2) { _keys.Add(key); continue; }
            Add(key[..^".weight".Length], key, format, info);
        }
        if (tiedHead && plan.Head != QuantFormat.None && !inner.TryGetInfo("lm_head.weight", out _) && inner.TryGetInfo("model.embed_tokens.weight", out var embed))
            Add("lm_head", "model.embed_tokens.weight", plan.Head, embed);
    }

    private void Add(string stem, string source, QuantFormat format, TensorInfo info)
    {
        long rows = info.Shape[0], n = info.Shape[1];
        var w = $"{stem}.{QuantLayout.WeightName(format)}";
        var s = $"{stem}.{QuantLayout.ScalesName(format)}";
        _quantized[w] = (source, format, false, new TensorInfo(w, torch.ScalarType.Byte, [rows, QuantLayout.RowBytes(format, n)]));
        _quantized[s] = (source, format, true, new TensorInfo(s, torch.ScalarType.BFloat16, [rows, QuantLayout.BlocksPerRow(n)]));
        _keys.Add(w);
        _keys.Add(s);
    }

    /// <summary>The format a float key gets under the plan (None: passed through).</summary>
    private QuantFormat FormatOf(string key)
    {
        if (key == "lm_head.weight") return _plan.Head;
        if (!key.StartsWith("model.layers.", StringComparison.Ordinal) || !key.EndsWith(".weight", StringComparison.Ordinal)) return QuantFormat.None;
        var stem = key[..^".weight".Length];
        return LlamaQuantization.LayerProjections.Any(p => stem.EndsWith("." + p, StringComparison.Ordinal)) ? _plan.Blocks : QuantFormat.None;
    }

    /// <inheritdoc />
    public string Description => $"{_inner.Description} (quantized {LlamaQuantization.Name(_plan.Blocks)}, head {LlamaQuantization.Name(_plan.Head)})";

    /// <inheritdoc />
    public IReadOnlyCollection<string> Keys => _keys;

    /// <inheritdoc />
    public bool TryGetInfo(string key, out TensorInfo info)
    {
        if (_quantized.TryGetValue(key, out var q))
        {
            info = q.Info;
            return true;
        }
        return _inner.TryGetInfo(key, out info) && FormatOf(key) == QuantFormat.None;
    }

    /// <inheritdoc />
    public torch.Tensor Load(string key, torch.ScalarType? dtype = null, torch.Device? device = null)
    {
        if (!_quantized.TryGetValue(key, out var q))
        {
            if (FormatOf(key) != QuantFormat.None) throw new MiniGptWeightsException($"{Description}: '{key}' is stored quantized here.", Description, key);
            return _inner.Load(key, dtype, device);
        }
        if (_last is not { } last || last.Source != q.Source || last.Format != q.Format)
        {
            Forget();
            using var weight = _inner.Load(q.Source);
            var (packed, scales) = QuantizedWeight.Quantize(q.Format, weight);
            _last = last = (q.Source, q.Format, packed, scales);
        }
        var result = q.Scales ? last.Scales : last.Packed;
        return result.to(dtype ?? result.dtype, device ?? torch.CPU, copy: true);
    }

    private void Forget()
    {
        if (_last is { } last)
        {
            last.Packed.Dispose();
            last.Scales.Dispose();
        }
        _last = null;
    }

    /// <summary>Frees the cached layer (the inner source is the caller's).</summary>
    public void Dispose() => Forget();
}
