using MiniGpt4.Generation;

namespace MiniGpt4.Tests.Generation;

/// <summary>
/// transformers' <c>generate()</c> arguments as the engine tests write them (HF's names and defaults),
/// split into the library's <see cref="GenerationOptions"/> and the model's <see cref="DecodeRules"/>.
/// </summary>
internal sealed record HfGenerate(
    bool DoSample = true, float Temperature = 1f, int TopK = 50, float TopP = 0.9f, float RepetitionPenalty = 1.05f,
    int MaxNewTokens = 300, int MinNewTokens = 0, int NumBeams = 1, float LengthPenalty = 1f, long? Seed = null,
    int EosId = 2, int BosId = 1, IReadOnlyList<int[]>? StopTokenSuffixes = null)
{
    public GenerationOptions Options => new()
    {
        DoSample = DoSample, Temperature = Temperature, TopK = TopK, TopP = TopP, RepetitionPenalty = RepetitionPenalty,
        MaxNewTokens = MaxNewTokens, MinNewTokens = MinNewTokens, NumBeams = NumBeams, LengthPenalty = LengthPenalty, Seed = Seed,
    };

    public DecodeRules Rules => new(EosId, BosId, StopTokenSuffixes);

    /// <summary>A generator over <paramref name="model"/> from its prefill logits.</summary>
    public static Generator Start(ITokenStepper model, ReadOnlySpan<float> firstLogits, HfGenerate s)
        => Generator.Start(model, firstLogits, s.Options, s.Rules);
}
