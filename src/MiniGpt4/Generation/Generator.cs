namespace MiniGpt4.Generation;

/// <summary>
/// One generation over an already prefilled <see cref="ITokenStepper"/>, with transformers 4.30
/// <c>generate()</c> semantics (MiniGPT-4 generates from <c>inputs_embeds</c>, so HF's
/// <c>input_ids</c> start as <c>[bos]</c>). Greedy and sampling stream one token per
/// <see cref="TryStep"/>; beam search (<see cref="GenerationOptions.NumBeams"/> &gt; 1; with
/// sampling HF's beam-sample) runs through <see cref="RunToEnd"/> or <see cref="TryBeamStep"/>.
/// <para>Per token: copy the logits row, repetition penalty over {BOS} + generated ids, EOS masked
/// below <see cref="GenerationOptions.MinNewTokens"/>, then argmax or temperature / top-k / top-p and
/// a draw. After appending: EOS or a stop-token suffix end the run with that
/// token included; <see cref="GenerationOptions.MaxNewTokens"/> ends it with
/// <see cref="MiniGptFinishReason.Length"/>.</para>
/// <para>The model is stepped lazily: the token chosen by one call is fed at the start of the
/// next, so the last generated token is never fed (as in HF) and a stopped run wastes no forward.
/// Each call does its tensor work inside its own dispose scope and no-grad guard, so calls may
/// come from different threads one after another (never concurrently).</para>
/// </summary>
internal sealed class Generator : IDisposable
{
    private readonly ITokenStepper _model;
    private readonly GenerationOptions _options;
    private readonly DecodeRules _rules;
    private readonly int _vocab;
    private readonly StopSuffixes _stops;
    private int _modelSteps;

    // single sequence
    private readonly float[]? _scores;
    private readonly List<int> _generated = [];
    private readonly PenalisedIds? _penalised;
    private readonly LogitsWarpers? _warpers;
    private readonly TokenSampler? _sampler;
    private int? _pending;

    // beams
    private readonly BeamSearch? _beams;

    /// <summary>
    /// Starts a generation from the prefill's last-position logits <paramref name="firstLogits"/>
    /// (V values; copied). Throws <see cref="ArgumentOutOfRangeException"/> for invalid options or ids
    /// outside the vocabulary, <see cref="ArgumentException"/> for logits of another width.
    /// </summary>
    public Generator(ITokenStepper model, ReadOnlySpan<float> firstLogits, GenerationOptions options, DecodeRules rules)
    {
        ArgumentNullException.ThrowIfNull(model);
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(rules);
        _vocab = model.VocabSize;
        options.Validate();
        rules.Validate(_vocab);
        _model = model;
        _options = options;
        _rules = rules;
        _stops = new StopSuffixes(rules.StopTokenSuffixes);
        if (firstLogits.Length != _vocab)
            throw new ArgumentException($"The prefill gave {firstLogits.Length} logits; the vocabulary has {_vocab}.", nameof(firstLogits));
        LogitsRows.ThrowIfNotFinite(firstLogits, step: 0);

        if (options.NumBeams > 1)
        {
            _beams = new BeamSearch(model, firstLogits, options, rules, _stops);
            return;
        }
        _scores = firstLogits.ToArray();
        _penalised = new PenalisedIds(rules.BosId);
        if (!options.IsGreedy)
        {
            _warpers = new LogitsWarpers(_vocab);
            _sampler = new TokenSampler(options.Seed ?? TokenSampler.NewSeed());
        }
    }

    /// <summary>
    /// Optional diagnostics hook: sees each step's scores after the logits processors (repetition
    /// penalty, min new tokens) and before the warpers - HF's <c>scores</c> for greedy (and
    /// <c>step_top5</c> in the oracle); for beams the processed log-probs of each beam before its
    /// running score is added (the oracle's <c>step_beam_top5</c>). Must not keep the span.
    /// </summary>
    public ProcessedScoresObserver? OnProcessedScores
    {
        get => _observer;
        set { _observer = value; if (_beams is not null) _beams.Observer = value; }
    }

    private ProcessedScoresObserver? _observer;

    /// <summary>True for beam search (no token stream; use <see cref="TryBeamStep"/> or <see cref="RunToEnd"/>).</summary>
    public bool IsBeamSearch => _beams is not null;

    /// <summary>Why the run ended, or null while it is running.</summary>
    public MiniGptFinishReason? Finish { get; private set; }

    /// <summary>Ids generated so far (single sequence); for beams, the current best running beam.</summary>
    public IReadOnlyList<int> Generated => _beams?.BestRunning ?? _generated;

    /// <summary>
    /// Greedy / sampling: produces the next token (feeding the previous one to the model first).
    /// Returns false once the run has finished (the stopping token itself is still returned by the
    /// call that produced it, with <see cref="Finish"/> already set).
    /// </summary>
    public bool TryStep(out int token)
    {
        if (_beams is not null)
            throw new InvalidOperationException("Beam search has no token stream: use TryBeamStep or RunToEnd.");
        token = -1;
        if (Finish is not null) return false;
        if (_pending is int previous)
        {
            _model.Step([previous], _scores);
            _modelSteps++;
            LogitsRows.ThrowIfNotFinite(_scores, step: _generated.Count);
            _pending = null;
        }
        token = NextToken();

        _generated.Add(token);
        _penalised!.Add(token);
        if (token == _rules.EosId || _stops.Match(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_generated)) >= 0)
            Finish = MiniGptFinishReason.Stop;
        else if (_generated.Count >= _options.MaxNewTokens)
            Finish = MiniGptFinishReason.Length;
        else
            _pending = token;
        return true;
    }

    private int NextToken()
    {
        var o = _options;
        var scores = _scores!.AsSpan();
        LogitsProcessors.RepetitionPenalty(scores, _penalised!.Ids, o.RepetitionPenalty);
        LogitsProcessors.MinNewTokens(scores, _generated.Count, o.MinNewTokens, _rules.EosId);
        _observer?.Invoke(_generated.Count, 0, scores);
        if (_sampler is null) return LogitsProcessors.ArgMax(scores);
        _warpers!.Warp(scores, o.Temperature, o.TopK, o.TopP);
        return _sampler.Sample(scores, _warpers.Candidates);
    }

    /// <summary>Beam search: runs one beam step; false once finished.</summary>
    public bool TryBeamStep()
    {
        if (_beams is null) throw new InvalidOperationException("Not a beam search: use TryStep.");
        if (Finish is not null) return false;
        Finish = _beams.Step(ref _modelSteps);
        return true;
    }

    /// <summary>
    /// Runs until a stop rule fires and returns the result; <paramref name="ct"/> is checked between
    /// steps and throws <see cref="OperationCanceledException"/>.
    /// </summary>
    public GenerationResult RunToEnd(CancellationToken ct = default)
    {
        while (Finish is null)
        {
            ct.ThrowIfCancellationRequested();
            if (_beams is not null) TryBeamStep();
            else TryStep(out _);
        }
        return Result;
    }

    /// <summary>The result so far (final once <see cref="Finish"/> is set).</summary>
    public GenerationResult Result
    {
        get
        {
            if (_beams is not null)
            {
                var hyps = _beams.FinalHypotheses();
                var best = hyps[0];
                return new GenerationResult(best.TokenIds, Finish, best.Score,
                    _modelSteps, _beams.Seed, hyps);
            }
            return new GenerationResult(_generated.ToArray(), Finish, null,
                _modelSteps, _sampler?.Seed);
        }
    }


    /// <summary>Releases the sampler's native generator (the model is the caller's).</summary>
    public void Dispose()
    {
        _sampler?.Dispose();
        _beams?.Dispose();
    }
}
