using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>
/// Multi-head self-attention with rotary embeddings and grouped-query attention, either over one layer of a
/// preallocated KV cache that it writes in place (inference, <see cref="LlamaSession"/>) or over a whole sequence
/// without a cache (differentiable, <see cref="LlamaForCausalLM.Forward"/>); both share the projections, the rotary
/// embedding and the attention. Field names equal the HF keys (<c>self_attn.{q,k,v,o}_proj.weight</c>).
/// </summary>
internal sealed class LlamaAttention : nn.Module
{
    private readonly Proj q_proj, k_proj, v_proj, o_proj;
    private readonly int _heads, _kvHeads, _headDim;

    public LlamaAttention(LlamaConfig config, ScalarType dtype, Device device, Quantization.QuantFormat quant = Quantization.QuantFormat.None) : base("self_attn")
    {
        _heads = config.NumAttentionHeads;
        _kvHeads = config.NumKeyValueHeads;
        _headDim = config.HeadDim;
        long h = config.HiddenSize, kv = (long)_kvHeads * _headDim;
        q_proj = new Proj("q_proj", h, h, dtype, device, quant);
        k_proj = new Proj("k_proj", h, kv, dtype, device, quant);
        v_proj = new Proj("v_proj", h, kv, dtype, device, quant);
        o_proj = new Proj("o_proj", h, h, dtype, device, quant);
        RegisterComponents();
    }

    /// <summary>The projections <c>q, k, v, o</c> (the CPU decode step reads their weights directly).</summary>
    internal (Proj Q, Proj K, Proj V, Proj O) Projections => (q_proj, k_proj, v_proj, o_proj);

    /// <summary>
    /// Attends <paramref name="x"/> <c>[B, T, H]</c> (positions <c>start .. start+T-1</c>) to the cached
    /// positions <c>0 .. start-1</c> and to itself. Writes this chunk's keys and values into
    /// <paramref name="cacheK"/>/<paramref name="cacheV"/> <c>[B, kvHeads, capacity, headDim]</c> first.
    /// <paramref name="mask"/> (bool, true = attend, <c>[1, 1, groups·T, start+T]</c>) is null for a single query.
    /// </summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor cacheK, Tensor cacheV, long start, Tensor? mask)
    {
        using var scope = NewDisposeScope();
        var t = x.shape[1];
        var (q, k, v) = Project(x, cos, sin);
        cacheK.narrow(2, start, t).copy_(k);
        cacheV.narrow(2, start, t).copy_(v);
        return Attend(q, cacheK.narrow(2, 0, start + t), cacheV.narrow(2, 0, start + t), mask).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Attends <paramref name="x"/> <c>[B, T, H]</c> to itself without a cache, writing nothing in place (differentiable);
    /// <paramref name="mask"/> is bool (true = attend) <c>[B or 1, 1, groups·T, T]</c>.
    /// </summary>
    public Tensor Forward(Tensor x, Tensor cos, Tensor sin, Tensor mask)
    {
        using var scope = NewDisposeScope();
        var (q, k, v) = Project(x, cos, sin);
        return Attend(q, k, v, mask).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The attention mask for <paramref name="allowed"/> (bool, true = query i may attend key j, <c>[T, S]</c> or
    /// <c>[B, T, S]</c>): its rows repeated once per query head of a KV group, in the order <see cref="Attend"/> uses.
    /// </summary>
    public static Tensor GroupedMask(Tensor allowed, int groups)
    {
        var batched = allowed.dim() == 2 ? allowed.unsqueeze(0) : allowed;
        return (groups > 1 ? batched.repeat(1, groups, 1) : batched).unsqueeze(1);
    }

    /// <summary>Queries, keys (both rotated) and values of <paramref name="x"/>, as <c>[B, heads or kvHeads, T, headDim]</c>.</summary>
    private (Tensor Q, Tensor K, Tensor V) Project(Tensor x, Tensor cos, Tensor sin)
    {
        long b = x.shape[0], t = x.shape[1];
        var q = q_proj.call(x).view(b, t, _heads, _headDim).transpose(1, 2);
        var k = k_proj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2);
        var v = v_proj.call(x).view(b, t, _kvHeads, _headDim).transpose(1, 2);
        return (RotaryEmbedding.Apply(q, cos, sin), RotaryEmbedding.Apply(k, cos, sin), v);
    }

    /// <summary>Scaled dot-product attention of <paramref name="q"/> over <paramref name="keys"/>/<paramref name="values"/>, then o_proj: <c>[B, T, H]</c>.</summary>
    private Tensor Attend(Tensor q, Tensor keys, Tensor values, Tensor? mask)
    {
        long b = q.shape[0], t = q.shape[2];
        var groups = _heads / _kvHeads;
        // Grouped-query attention without copying K/V: the query heads that share one KV head are consecutive, so
        // [B, heads, T, d] regroups to [B, kvHeads, groups·T, d] (rows ordered head-major, matching the mask rows).
        var grouped = q.reshape(b, _kvHeads, groups * t, _headDim);
        var context = nn.functional.scaled_dot_product_attention(grouped, keys, values, attn_mask: mask);
        var merged = context.reshape(b, _heads, t, _headDim).transpose(1, 2).reshape(b, t, _heads * _headDim);
        return o_proj.call(merged);
    }
}
