using Xunit;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language;

/// <summary>
/// The decoder relies on libtorch's scaled_dot_product_attention for half-precision attention:
/// transformers 4.30 computes the softmax in float32, and SDPA on bf16/fp16 inputs must be at least
/// as precise (its CPU kernels accumulate in float32), i.e. within the output's own rounding of an
/// all-float32 computation on the same inputs.
/// </summary>
public sealed class AttentionPrecisionTests
{
    [Theory]
    [InlineData(ScalarType.BFloat16, 1)]
    [InlineData(ScalarType.BFloat16, 37)]
    [InlineData(ScalarType.Float16, 37)]
    public void Half_precision_attention_matches_float32_softmax_to_output_rounding(ScalarType dtype, long queries)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(11);
        const long keys = 200;
        var q = (randn([1, 4, queries, 128], generator: g) * 3).to(dtype);
        var k = (randn([1, 4, keys, 128], generator: g) * 3).to(dtype);
        var v = randn([1, 4, keys, 128], generator: g).to(dtype);
        // Queries are the last positions; each sees keys up to its own position.
        var mask = (arange(keys).unsqueeze(0) <= arange(keys - queries, keys).unsqueeze(1)).view(1, 1, queries, keys);

        var scores = matmul(q.to(ScalarType.Float32), k.to(ScalarType.Float32).transpose(2, 3)) / Math.Sqrt(128);
        var expected = matmul(softmax(scores.masked_fill(mask.logical_not(), float.NegativeInfinity), -1), v.to(ScalarType.Float32));
        var actual = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask: queries == 1 ? null : mask).to(ScalarType.Float32);

        var max = expected.abs().max().item<float>();
        var ulp = dtype == ScalarType.BFloat16 ? Math.Pow(2, -8) : Math.Pow(2, -11); // relative step of the output dtype
        var diff = (actual - expected).abs().max().item<float>();
        Assert.True(diff <= 2 * ulp * max, $"{dtype}, {queries} queries: max abs diff {diff} vs float32 softmax (|out| <= {max})");
    }
}
