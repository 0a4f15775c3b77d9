using TorchSharp;
using MiniGpt4.Runtime;
using System.Text.RegularExpressions;
using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>
/// Folds LoRA adapters (MiniGPT-v2: q_proj and v_proj, peft 0.2.0) into the base projections:
/// <c>W ← W + (α / r) · B·A</c>, computed in float32 and stored in the weight's dtype. The merged
/// model equals peft's unmerged forward <c>W·x + (α/r)·B·(A·x)</c> up to float32 rounding
/// (the oracle measured 1.0e-5 on its logits) and costs nothing at inference.
/// </summary>
internal static partial class LoraMerge
{
    /// <summary>
    /// Merges every adapter in <paramref name="source"/>, whose keys are relative to the LLM
    /// (<c>model.layers.N.self_attn.q_proj.lora_A.weight</c>, with or without peft ≥ 0.3's <c>.default</c>; use
    /// <see cref="WeightSourceExtensions.WithPrefix"/> for <c>llama_model.base_model.model.</c>). The rank r comes from
    /// the shapes, <paramref name="alpha"/> from the model's configuration (MiniGPT-v2: 16). Returns the merged module
    /// names. Throws <see cref="MiniGptWeightsException"/> for an adapter without its pair, an unknown module or
    /// mismatched shapes (nothing is modified then).
    /// </summary>
    public static IReadOnlyList<string> MergeLora(this LlamaForCausalLM lm, IWeightSource source, double alpha)
    {
        if (!(alpha > 0)) throw new ArgumentOutOfRangeException(nameof(alpha), alpha, "LoRA alpha must be positive.");
        var projections = lm.named_modules().Where(m => m.module is Proj).ToDictionary(m => m.name, m => (Proj)m.module);

        var plan = new List<(string Module, Proj Target, string KeyA, string KeyB, long Rank)>();
        foreach (var key in source.Keys)
        {
            if (LoraKey().Match(key) is not { Success: true } m) continue;
            var (module, suffix, isA) = (m.Groups[1].Value, m.Groups[3].Value, m.Groups[2].Value == "A");
            var (keyA, keyB) = ($"{module}.lora_A{suffix}.weight", $"{module}.lora_B{suffix}.weight");
            if (!source.TryGetInfo(keyA, out var infoA) || !source.TryGetInfo(keyB, out var infoB))
                throw new MiniGptWeightsException($"{source.Description}: LoRA adapter '{key}' has no '{(isA ? keyB : keyA)}'.", source.Description, key);
            if (!isA) continue;
            if (!projections.TryGetValue(module, out var target))
                throw new MiniGptWeightsException($"{source.Description}: LoRA adapter '{key}' targets '{module}', which is not a projection of the LLaMA model.", source.Description, key);
            if (target.Weight.dtype != lm.DType)
                throw new InvalidOperationException($"'{module}' keeps its {target.Weight.dtype} weight as stored; LoRA adapters merge into a model loaded with keepFloat16: false.");
            long rows = target.Weight.shape[0], cols = target.Weight.shape[1];
            if (infoA.Shape.Length != 2 || infoB.Shape.Length != 2 || infoA.Shape[1] != cols || infoB.Shape[0] != rows || infoB.Shape[1] != infoA.Shape[0])
                throw new MiniGptWeightsException(
                    $"{source.Description}: LoRA shapes for '{module}' do not fit its weight [{rows}, {cols}]: A {infoA.Describe()}, B {infoB.Describe()} (expected A [r, {cols}], B [{rows}, r]).",
                    source.Description, key);
            plan.Add((module, target, keyA, keyB, infoA.Shape[0]));
        }

        using var guard = no_grad();
        foreach (var (_, target, keyA, keyB, rank) in plan)
        {
            using var scope = NewDisposeScope();
            var a = source.Load(keyA, ScalarType.Float32, lm.Device);
            var b = source.Load(keyB, ScalarType.Float32, lm.Device);
            using var scaling = (alpha / rank).ToScalar(); // held for the call: see TensorMath
            var merged = target.Weight.to(ScalarType.Float32).Plus(matmul(b, a).mul(scaling));
            target.Weight.copy_(merged);
        }
        return plan.Select(p => p.Module).ToList();
    }

    [GeneratedRegex(@"^(.+)\.lora_([AB])(\.[^.]+)?\.weight$", RegexOptions.CultureInvariant)]
    private static partial Regex LoraKey();
}
