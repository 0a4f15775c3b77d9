using TorchSharp;

namespace MiniGpt4.Generation;

/// <summary>
/// Draws one token from softmax(scores) over the candidates the warpers left (HF's
/// <c>multinomial(softmax(scores), 1)</c>). The randomness comes from this generation's own
/// seeded <see cref="torch.Generator"/> (never the global RNG), read in blocks of uniforms, so a
/// seed reproduces a run on any machine; the draw stream is not PyTorch's multinomial stream.
/// </summary>
internal sealed class TokenSampler : IDisposable
{
    private readonly torch.Generator _generator;
    private readonly double[] _uniforms = new double[256];
    private int _next;

    /// <summary>Seeds the generator.</summary>
    public TokenSampler(long seed)
    {
        _generator = new torch.Generator(unchecked((ulong)seed));
        _next = _uniforms.Length;
    }

    /// <summary>Draws a token: P(id) = exp(scores[id]) / sum over <paramref name="candidates"/>.</summary>
    public int Sample(ReadOnlySpan<float> scores, ReadOnlySpan<int> candidates)
    {
        float max = float.NegativeInfinity;
        foreach (var id in candidates) if (scores[id] > max) max = scores[id];
        if (!float.IsFinite(max))
            throw new InvalidOperationException("Sampling: no token has a finite score (all were filtered or the logits are not finite).");
        double z = 0;
        foreach (var id in candidates) z += Math.Exp((double)scores[id] - max);
        double target = NextUniform() * z, cumulative = 0;
        int last = candidates[0];
        foreach (var id in candidates)
        {
            double e = Math.Exp((double)scores[id] - max);
            if (e == 0) continue;
            cumulative += e;
            last = id;
            if (target < cumulative) return id;
        }
        return last; // rounding: target landed on the total
    }

    /// <summary>The next uniform draw in [0, 1) from this generation's generator.</summary>
    public double NextUniform()
    {
        if (_next == _uniforms.Length)
        {
            using var block = torch.rand([_uniforms.Length], dtype: torch.float64, generator: _generator);
            block.data<double>().CopyTo(_uniforms);
            _next = 0;
        }
        return _uniforms[_next++];
    }

    /// <summary>Releases the native generator.</summary>
    public void Dispose() => _generator.Dispose();
}
