using System.Runtime.InteropServices;
using MiniGpt4.Abstractions;

namespace MiniGpt4.Generation;

/// <summary>
/// One generation over an already prefilled <see cref="ITokenStepper"/>, with transformers 4.30
/// <c>generate()</c> semantics (MiniGPT-4 generates from <c>inputs_embeds</c>, so HF's
/// <c>input_ids</c> start as <c>[bos]</c>): <see cref="SingleSequence"/> for greedy and sampling,
/// <see cref="BeamSearch"/> for <see cref="GenerationOptions.NumBeams"/> &gt; 1 (with sampling HF's beam-sample).
/// <para>The model is stepped lazily: the token chosen by one call is fed at the start of the
/// next, so the last generated token is never fed (as in HF) and a stopped run wastes no forward.
/// Calls may come from different threads one after another (never concurrently).</para>
/// </summary>
internal abstract class Generator : IDisposable
{
    private protected readonly ITokenStepper Model;
    private protected readonly GenerationOptions Options;
    private protected readonly DecodeRules Rules;
    private protected readonly int Vocab;
    private protected readonly LogitsWarpers? Warpers;
    private protected readonly TokenSampler? Sampler;

    private protected Generator(ITokenStepper model, ReadOnlySpan<float> firstLogits, GenerationOptions options, DecodeRules rules)
    {
        Vocab = model.VocabSize;
        options.Validate();
        rules.Validate(Vocab);
        Model = model;
        Options = options;
        Rules = rules;
        if (firstLogits.Length != Vocab)
            throw new ArgumentException($"The prefill gave {firstLogits.Length} logits; the vocabulary has {Vocab}.", nameof(firstLogits));
        LogitsProcessors.ThrowIfNotFinite(firstLogits, step: 0);
        if (!options.IsGreedy)
        {
            Warpers = new LogitsWarpers(Vocab);
            Sampler = new TokenSampler(options.Seed ?? Random.Shared.NextInt64(long.MaxValue));
        }
    }

    /// <summary>
    /// Starts a generation from the prefill's last-position logits <paramref name="firstLogits"/>
    /// (V values; copied). Throws <see cref="ArgumentOutOfRangeException"/> for invalid options or ids
    /// outside the vocabulary, <see cref="ArgumentException"/> for logits of another width.
    /// </summary>
    public static Generator Start(ITokenStepper model, ReadOnlySpan<float> firstLogits, GenerationOptions options, DecodeRules rules) =>
        options.NumBeams > 1 ? new BeamSearch(model, firstLogits, options, rules) : new SingleSequence(model, firstLogits, options, rules);

    /// <summary>
    /// Optional diagnostics hook: sees each row of scores after the logits processors (step = tokens generated
    /// before it, beam index, scores) - HF's <c>scores</c> for greedy (<c>step_top5</c> in the oracle); for beams
    /// the processed log-probs before the beam's running score is added (<c>step_beam_top5</c>). Must not keep the span.
    /// </summary>
    public Action<int, int, ReadOnlySpan<float>>? OnProcessedScores { get; set; }

    /// <summary>Why the run ended, or null while it is running.</summary>
    public MiniGptFinishReason? Finish { get; private set; }

    /// <summary>The result so far (final once <see cref="Finish"/> is set).</summary>
    public abstract GenerationResult Result { get; }

    /// <summary>
    /// One step: the next token (its id in <paramref name="token"/>), or one beam step (no token stream:
    /// <paramref name="token"/> is -1). Returns false once the run has finished (the stopping token itself is
    /// still returned by the call that produced it, with <see cref="Finish"/> already set).
    /// </summary>
    public bool TryStep(out int token)
    {
        token = -1;
        if (Finish is not null) return false;
        var feed = BeginStep();
        if (!feed.IsEmpty) Model.Step(feed, FeedLogits);
        CompleteStep(out token);
        return true;
    }

    /// <summary>
    /// The first half of a step, for a caller that runs the model itself (the engine's batched decode): prepares the
    /// model's rows (beam search reorders them) and returns the token to append to each row, or nothing when this step
    /// needs no forward (the first, which uses the prefill's logits). The caller then writes the rows' logits into
    /// <see cref="FeedLogits"/> and calls <see cref="CompleteStep"/>. <see cref="TryStep"/> does all three.
    /// </summary>
    public ReadOnlySpan<int> BeginStep()
    {
        if (Finish is not null) throw new InvalidOperationException("The generation has finished.");
        return Feed();
    }

    /// <summary>Where the logits of the rows <see cref="BeginStep"/> returned go (rows × vocabulary).</summary>
    public abstract Span<float> FeedLogits { get; }

    /// <summary>The second half of a step: the next token from the fed logits (see <see cref="TryStep"/>).</summary>
    public void CompleteStep(out int token) => Finish = Advance(out token);

    /// <summary>
    /// Runs until a stop rule fires and returns the result; <paramref name="ct"/> is checked between
    /// steps and throws <see cref="OperationCanceledException"/>.
    /// </summary>
    public GenerationResult RunToEnd(CancellationToken ct = default)
    {
        while (Finish is null)
        {
            ct.ThrowIfCancellationRequested();
            TryStep(out _);
        }
        return Result;
    }

    /// <summary>Releases the sampler's native generator (the model is the caller's).</summary>
    public void Dispose() => Sampler?.Dispose();

    /// <summary>The tokens to append before the next decision (one per model row), or nothing.</summary>
    private protected abstract ReadOnlySpan<int> Feed();

    /// <summary>One step after the feed's logits are in <see cref="FeedLogits"/>; returns the finish reason when the run ended with it, else null.</summary>
    private protected abstract MiniGptFinishReason? Advance(out int token);

    /// <summary>
    /// HF's logits processors on one sequence's row: repetition penalty over {BOS} + its ids, then EOS masked while
    /// fewer than <see cref="GenerationOptions.MinNewTokens"/> were generated (HF's <c>min_length=1</c> is met by the BOS).
    /// </summary>
    private protected void Process(Span<float> row, List<int> generated, int beam)
    {
        LogitsProcessors.RepetitionPenalty(row, Rules.BosId, CollectionsMarshal.AsSpan(generated), Options.RepetitionPenalty);
        if (generated.Count < Options.MinNewTokens) row[Rules.EosId] = float.NegativeInfinity;
        OnProcessedScores?.Invoke(generated.Count, beam, row);
    }
}

/// <summary>
/// Greedy or sampling, one token per step: copy of the logits row, <see cref="Generator.Process"/>, then argmax or
/// temperature / top-k / top-p and a draw. EOS or a stop-token suffix end the run with that token included;
/// <see cref="GenerationOptions.MaxNewTokens"/> ends it with <see cref="MiniGptFinishReason.Length"/>.
/// </summary>
internal sealed class SingleSequence(ITokenStepper model, ReadOnlySpan<float> firstLogits, GenerationOptions options, DecodeRules rules)
    : Generator(model, firstLogits, options, rules)
{
    private readonly float[] _scores = firstLogits.ToArray();
    private readonly List<int> _generated = [];
    private readonly int[] _feed = new int[1];

    public override GenerationResult Result => new(_generated.ToArray(), Finish, null);

    public override Span<float> FeedLogits => _scores;

    private protected override ReadOnlySpan<int> Feed()
    {
        if (_generated.Count == 0) return [];
        _feed[0] = _generated[^1];
        return _feed;
    }

    private protected override MiniGptFinishReason? Advance(out int token)
    {
        if (_generated.Count > 0) LogitsProcessors.ThrowIfNotFinite(_scores, step: _generated.Count);
        Process(_scores, _generated, beam: 0);
        if (Sampler is null) token = LogitsProcessors.ArgMax(_scores);
        else
        {
            Warpers!.Warp(_scores, Options.Temperature, Options.TopK, Options.TopP);
            token = Sampler.Sample(_scores, Warpers.Candidates);
        }
        _generated.Add(token);
        if (token == Rules.EosId || Rules.EndsWithStop(CollectionsMarshal.AsSpan(_generated))) return MiniGptFinishReason.Stop;
        return _generated.Count >= Options.MaxNewTokens ? MiniGptFinishReason.Length : null;
    }
}

/// <summary>
/// The outcome of one generation. <see cref="TokenIds"/> holds the generated ids only (no BOS, no
/// prompt) and, like HF's returned sequence, includes the stopping token (EOS or the last id of a stop suffix).
/// </summary>
/// <param name="TokenIds">Generated ids, stopping token included.</param>
/// <param name="Finish">Why the generation ended; null while it runs.</param>
/// <param name="SequenceScore">Beam search: the returned hypothesis' score (HF <c>sequences_scores</c>); null otherwise.</param>
/// <param name="Hypotheses">Beam search: every kept final hypothesis, best first; null otherwise.</param>
internal sealed record GenerationResult(IReadOnlyList<int> TokenIds, MiniGptFinishReason? Finish, double? SequenceScore,
    IReadOnlyList<BeamHypothesis>? Hypotheses = null);

/// <summary>
/// The seam between the decoding loop and a language model's cache: token ids in, logits out. The cache
/// has already been prefilled with the prompt; decoding starts from the logits the prefill returned.
/// </summary>
internal interface ITokenStepper
{
    /// <summary>Size of the logits' last dimension.</summary>
    int VocabSize { get; }

    /// <summary>Appends one token to each row and writes next-token logits (rows × <see cref="VocabSize"/>) into <paramref name="logits"/>.</summary>
    void Step(ReadOnlySpan<int> tokenPerRow, Span<float> logits);

    /// <summary>
    /// Beam search: rebuilds the rows so that new row <c>i</c> is a copy of old row <c>source[i]</c>
    /// (the count may differ from the current row count, e.g. 1 -> k at the first step).
    /// </summary>
    void ReorderRows(ReadOnlySpan<int> source);
}

/// <summary>A language model's cache as an <see cref="ITokenStepper"/>.</summary>
internal sealed class CacheStepper(ILanguageModel model, LanguageModelCache cache) : ITokenStepper
{
    public int VocabSize => model.VocabSize;

    public void Step(ReadOnlySpan<int> tokenPerRow, Span<float> logits) => model.Step(cache, tokenPerRow, logits);

    public void ReorderRows(ReadOnlySpan<int> source) => cache.ReorderRows(source);
}
