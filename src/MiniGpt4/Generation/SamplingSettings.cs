namespace MiniGpt4.Generation;

/// <summary>
/// Decoding settings with transformers 4.30 <c>generate()</c> semantics (defaults = MiniGPT-4's
/// <c>Chat.answer</c>: sampling, top-k 50, top-p 0.9, repetition penalty 1.05, 300 new tokens).
/// <para><see cref="DoSample"/> = false, or a temperature &lt;= 0, decodes greedily (argmax of the
/// processed scores); HF would reject a temperature of 0, we read it as "greedy".</para>
/// <para><see cref="Seed"/> = null draws a fresh seed; the seed actually used is reported in
/// <see cref="GenerationResult.Seed"/> so a run can be repeated.</para>
/// <para><see cref="StopTokenSuffixes"/>: stop as soon as the generated ids end with one of these
/// sequences (MiniGPT-4's demo: <c>[835]</c> and <c>[2277, 29937]</c>, two spellings of <c>###</c>).
/// EOS always stops.</para>
/// </summary>
internal sealed record SamplingSettings(
    bool DoSample = true,
    float Temperature = 1f,
    int TopK = 50,
    float TopP = 0.9f,
    float RepetitionPenalty = 1.05f,
    int MaxNewTokens = 300,
    int MinNewTokens = 0,
    int NumBeams = 1,
    float LengthPenalty = 1f,
    long? Seed = null,
    int EosId = 2,
    int BosId = 1,
    IReadOnlyList<int[]>? StopTokenSuffixes = null)
{
    /// <summary>True when tokens are drawn (sampling with a positive temperature), false for argmax.</summary>
    public bool IsSampling => DoSample && Temperature > 0f;

    /// <summary>Throws <see cref="MiniGptConfigurationException"/> for settings HF would reject or that cannot work with this vocabulary.</summary>
    public void Validate(int vocabSize)
    {
        static void Fail(string message) => throw new MiniGptConfigurationException("Generation settings: " + message);
        if (vocabSize < 2) Fail($"the model's vocabulary has {vocabSize} entries; at least 2 are needed.");
        if (MaxNewTokens < 1) Fail($"MaxNewTokens must be at least 1 (got {MaxNewTokens}).");
        if (MinNewTokens < 0) Fail($"MinNewTokens must not be negative (got {MinNewTokens}).");
        if (TopK < 0) Fail($"TopK must be 0 (off) or positive (got {TopK}).");
        if (!(TopP >= 0f && TopP <= 1f)) Fail($"TopP must lie in [0, 1] (got {TopP}).");
        if (!(RepetitionPenalty > 0f) || float.IsInfinity(RepetitionPenalty)) Fail($"RepetitionPenalty must be a positive finite number (got {RepetitionPenalty}).");
        if (float.IsNaN(Temperature) || float.IsInfinity(Temperature)) Fail($"Temperature must be finite (got {Temperature}).");
        if (NumBeams < 1) Fail($"NumBeams must be at least 1 (got {NumBeams}).");
        if (!float.IsFinite(LengthPenalty)) Fail($"LengthPenalty must be finite (got {LengthPenalty}).");
        if (EosId < 0 || EosId >= vocabSize) Fail($"EosId {EosId} is outside the vocabulary [0, {vocabSize}).");
        if (BosId < 0 || BosId >= vocabSize) Fail($"BosId {BosId} is outside the vocabulary [0, {vocabSize}).");
        foreach (var stop in StopTokenSuffixes ?? [])
        {
            if (stop is null || stop.Length == 0) Fail("a stop token suffix is empty.");
            foreach (var id in stop!)
                if (id < 0 || id >= vocabSize) Fail($"stop token id {id} is outside the vocabulary [0, {vocabSize}).");
        }
    }
}
