using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Training;

/// <summary>
/// <c>torch.optim.AdamW</c>'s update (decoupled weight decay, bias-corrected moments, ε outside the square root) over
/// a fixed set of parameters with their own weight decay, its state (two moments per parameter) kept so a run can be
/// saved and resumed bit for bit. Every scalar is explicit and kept alive for the call (docs/architecture.md).
/// </summary>
internal sealed class AdamW(IReadOnlyList<(string Name, Tensor Parameter, double WeightDecay)> parameters, double beta1, double beta2, double epsilon)
    : IDisposable
{
    private readonly Tensor[] _m = parameters.Select(p => zeros_like(p.Parameter)).ToArray();
    private readonly Tensor[] _v = parameters.Select(p => zeros_like(p.Parameter)).ToArray();

    /// <summary>Steps taken (the bias corrections' exponent).</summary>
    public int StepCount { get; set; }

    /// <summary>The first and second moments by name (<c>exp_avg.NAME</c>, <c>exp_avg_sq.NAME</c>), for saving.</summary>
    public IEnumerable<KeyValuePair<string, Tensor>> State =>
        parameters.SelectMany((p, i) => new[]
        {
            new KeyValuePair<string, Tensor>("exp_avg." + p.Name, _m[i]),
            new KeyValuePair<string, Tensor>("exp_avg_sq." + p.Name, _v[i]),
        });

    /// <summary>Applies one update with learning rate <paramref name="lr"/> from the parameters' gradients, then zeroes them.</summary>
    public void Step(double lr)
    {
        StepCount++;
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var bc1 = 1 - Math.Pow(beta1, StepCount);
        var bc2 = 1 - Math.Pow(beta2, StepCount);
        using Scalar b1 = beta1, oneMinusB1 = 1 - beta1, b2 = beta2, oneMinusB2 = 1 - beta2, eps = epsilon, sqrtBc2 = Math.Sqrt(bc2), stepSize = -lr / bc1;
        for (var i = 0; i < parameters.Count; i++)
        {
            var (_, p, wd) = parameters[i];
            using var g = p.grad ?? throw new InvalidOperationException($"parameter {parameters[i].Name} has no gradient");
            if (wd != 0)
            {
                using Scalar decay = 1 - lr * wd;
                p.mul_(decay);
            }
            _m[i].mul_(b1).add_(g, oneMinusB1);
            _v[i].mul_(b2).addcmul_(g, g, oneMinusB2);
            var denom = _v[i].sqrt().div_(sqrtBc2).add_(eps);
            p.addcdiv_(_m[i], denom, stepSize);
            g.zero_();
        }
    }

    public void Dispose()
    {
        foreach (var t in _m.Concat(_v)) t.Dispose();
    }
}

/// <summary>
/// The reference's <c>LinearWarmupCosineLRScheduler</c> (minigpt4/common/optims.py), set before each step: linear from
/// the warm-up rate to the peak over the warm-up steps, then <c>(peak - min) * 0.5 * (1 + cos(π t / T)) + min</c> with
/// <c>t</c> the step index and <c>T</c> the run's steps.
/// </summary>
internal static class LearningRateSchedule
{
    public static double At(int step, int totalSteps, int warmupSteps, double warmupLr, double peakLr, double minLr) =>
        step < warmupSteps
            ? Math.Min(peakLr, warmupLr + (peakLr - warmupLr) * step / Math.Max(warmupSteps, 1))
            : (peakLr - minLr) * 0.5 * (1.0 + Math.Cos(Math.PI * step / totalSteps)) + minLr;
}
