namespace MiniGpt4.Generation;

/// <summary>One final beam-search hypothesis.</summary>
/// <param name="TokenIds">Generated ids (no BOS); ends with EOS when <paramref name="EndedWithEos"/>.</param>
/// <param name="Score">HF's final score: sum of processed log-probs / (1 + ids without EOS) ^ length_penalty.</param>
/// <param name="EndedWithEos">True when the hypothesis was finished by EOS, false when it was still running at the end.</param>
internal sealed record BeamHypothesis(IReadOnlyList<int> TokenIds, double Score, bool EndedWithEos);

/// <summary>
/// The outcome of one generation. <see cref="TokenIds"/> holds the generated ids only (no BOS, no
/// prompt) and, like HF's returned sequence, includes the stopping token (EOS or the last id of a
/// stop suffix / the token that completed a stop string).
/// </summary>
/// <param name="TokenIds">Generated ids, stopping token included.</param>
/// <param name="Finish">Why the generation ended; null while it runs.</param>
/// <param name="SequenceScore">Beam search: the returned hypothesis' score (HF <c>sequences_scores</c>); null otherwise.</param>
/// <param name="ModelSteps">Calls of <see cref="ITokenStepper.Step"/> (the first token comes from the prefill logits).</param>
/// <param name="Seed">The sampling seed used (sampling and beam-sample; null for greedy and beam search).</param>
/// <param name="Hypotheses">Beam search: every kept final hypothesis, best first; null otherwise.</param>
internal sealed record GenerationResult(
    IReadOnlyList<int> TokenIds,
    MiniGptFinishReason? Finish,
    double? SequenceScore,
    int ModelSteps,
    long? Seed = null,
    IReadOnlyList<BeamHypothesis>? Hypotheses = null);
