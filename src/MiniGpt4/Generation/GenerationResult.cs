namespace MiniGpt4.Generation;

/// <summary>One final beam-search hypothesis.</summary>
/// <param name="TokenIds">Generated ids (no BOS); ends with EOS when <paramref name="EndedWithEos"/>.</param>
/// <param name="Score">HF's final score: sum of processed log-probs / (1 + ids without EOS) ^ length_penalty.</param>
/// <param name="EndedWithEos">True when the hypothesis was finished by EOS, false when it was still running at the end.</param>
internal sealed record BeamHypothesis(IReadOnlyList<int> TokenIds, double Score, bool EndedWithEos);

/// <summary>Counts and timings of one generation.</summary>
/// <param name="PromptTokens">Prompt length as given by the caller (positions prefilled).</param>
/// <param name="GeneratedTokens">Ids in <see cref="GenerationResult.TokenIds"/>.</param>
/// <param name="Prefill">Prefill / first-step time as given by the caller.</param>
/// <param name="Decode">Time spent inside the engine's steps (model forwards plus token selection).</param>
/// <param name="ModelSteps">Calls of <see cref="ITokenStepper.Step"/> (the first token comes from the prefill logits).</param>
internal sealed record GenerationStats(int PromptTokens, int GeneratedTokens, TimeSpan Prefill, TimeSpan Decode, int ModelSteps)
{
    /// <summary>Model steps per second of decode time (0 when nothing was measured); for beams one step advances every beam.</summary>
    public double DecodeStepsPerSecond => Decode > TimeSpan.Zero ? ModelSteps / Decode.TotalSeconds : 0;

    /// <summary>Returned tokens per second of decode time (0 when nothing was measured).</summary>
    public double DecodeTokensPerSecond => Decode > TimeSpan.Zero ? GeneratedTokens / Decode.TotalSeconds : 0;
}

/// <summary>
/// The outcome of one generation. <see cref="TokenIds"/> holds the generated ids only (no BOS, no
/// prompt) and, like HF's returned sequence, includes the stopping token (EOS or the last id of a
/// stop suffix / the token that completed a stop string).
/// </summary>
/// <param name="TokenIds">Generated ids, stopping token included.</param>
/// <param name="Finish">Why the generation ended; null while it runs.</param>
/// <param name="SequenceScore">Beam search: the returned hypothesis' score (HF <c>sequences_scores</c>); null otherwise.</param>
/// <param name="Stats">Counts and timings.</param>
/// <param name="Seed">The sampling seed used (sampling and beam-sample; null for greedy and beam search).</param>
/// <param name="Hypotheses">Beam search: every kept final hypothesis, best first; null otherwise.</param>
internal sealed record GenerationResult(
    IReadOnlyList<int> TokenIds,
    MiniGptFinishReason? Finish,
    double? SequenceScore,
    GenerationStats Stats,
    long? Seed = null,
    IReadOnlyList<BeamHypothesis>? Hypotheses = null);

/// <summary>What the caller knows about the prompt: its length and how long prefill took.</summary>
internal readonly record struct PrefillInfo(int PromptTokens, TimeSpan Elapsed);
