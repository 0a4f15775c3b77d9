using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Bridge;

/// <summary>Shared checks of the projectors.</summary>
internal static class ProjectorInput
{
    /// <summary>Throws <see cref="ArgumentException"/> unless <paramref name="tokens"/> is <c>[B, T, width]</c> with enough tokens.</summary>
    public static void Check(Tensor tokens, int width, int minTokens, bool exactTokens = false)
    {
        var ok = tokens.dim() == 3 && tokens.shape[0] >= 1 && tokens.shape[2] == width
                 && (exactTokens ? tokens.shape[1] == minTokens : tokens.shape[1] >= minTokens);
        if (!ok)
            throw new ArgumentException(
                $"Vision tokens must be [B, {(exactTokens ? minTokens.ToString() : "T")}, {width}]; got [{string.Join(", ", tokens.shape)}].",
                nameof(tokens));
    }

    /// <summary>
    /// Shape <c>(out, in)</c> of <c>llama_proj.weight</c> in a stage checkpoint; throws
    /// <see cref="MiniGptWeightsException"/> naming the key when it is absent, not 2-D, or (when
    /// <paramref name="expectedIn"/> is given) takes another input width.
    /// </summary>
    public static (int Out, int In) LlamaProjShape(IWeightSource source, int? expectedIn, string inName)
    {
        const string key = "llama_proj.weight";
        if (!source.TryGetInfo(key, out var info))
            throw new MiniGptWeightsException($"{source.Description} has no {key}: it is not a MiniGPT stage checkpoint.", source.Description, key);
        var shape = info.Shape;
        if (shape.Length != 2 || shape[0] <= 0 || shape[1] <= 0 || shape[0] > int.MaxValue || shape[1] > int.MaxValue)
            throw new MiniGptWeightsException($"{key} in {source.Description} has shape [{string.Join(", ", shape)}]; expected [out, in].", source.Description, key);
        if (expectedIn is { } e && shape[1] != e)
            throw new MiniGptWeightsException(
                $"{key} in {source.Description} has shape [{string.Join(", ", shape)}]; expected [*, {e}] ({inName}).", source.Description, key);
        return ((int)shape[0], (int)shape[1]);
    }
}
