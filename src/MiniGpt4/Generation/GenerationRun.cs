using MiniGpt4.Abstractions;
using System.Diagnostics;
using MiniGpt4.Models;
using MiniGpt4.Text;

namespace MiniGpt4.Generation;

/// <summary>
/// One answer over a <see cref="ConversationCache"/>: <see cref="Prefill"/> (reusing the cache's longest common
/// prefix), then one token per <see cref="Next"/> (greedy or sampling), or one beam step per call (beam search,
/// the best hypothesis at the end), with stop strings, streaming text, usage, timings and the finish reason.
/// Each call is synchronous; the engine's scheduler runs them on its loop, a step split in two
/// (<see cref="BeginNext"/>, <see cref="CompleteNext"/>) around one batched forward for every running answer.
/// </summary>
internal sealed class GenerationRun(ILanguageModel model, PromptSequence prompt, GenerationOptions options, ConversationCache conversation) : IDisposable
{
    private readonly long[] _keys = PositionKeys(prompt);
    private readonly StreamingText _text = new(ids => model.Detokenize(ids, skipSpecialTokens: true));
    private readonly StopStringMatcher? _stops = options.StopStrings.Count > 0 ? new StopStringMatcher(options.StopStrings) : null;
    private readonly List<int> _tokens = new();
    private readonly Stopwatch _decode = new();
    private Generator? _generator;
    private int _reused;
    private double _prefillMs;
    private float[]? _logits; // the first logits, once the prefill has started
    private bool _finished;

    /// <summary>Computes the prompt's keys/values after the reused prefix and the first logits; cancellable between layers.</summary>
    public void Prefill(CancellationToken cancellationToken)
    {
        while (!PrefillPart(int.MaxValue, cancellationToken)) { }
    }

    /// <summary>
    /// Prefills at most <paramref name="maxPositions"/> further prompt positions (the first call keeps the cache's longest
    /// common prefix); true once the prompt is complete and the first token can be chosen. Chunks go through
    /// <see cref="IBatchedLanguageModel.PrefillPart"/>, which a model offers only where they change no number; any other
    /// model prefills the whole prompt in the first call.
    /// </summary>
    public bool PrefillPart(int maxPositions, CancellationToken cancellationToken)
    {
        if (_generator is not null) throw new InvalidOperationException("The prompt is prefilled already.");
        var sw = Stopwatch.StartNew();
        var cache = conversation.Cache;
        if (_logits is null)
        {
            // Left truncation (the reference's) shifts every position: nothing cached stays valid.
            _reused = conversation.KeepCommonPrefix(_keys, reuse: prompt.SkipLeft == 0);
            cache.Reserve(_keys.Length + options.MaxNewTokens);
            _logits = new float[model.VocabSize];
        }
        var done = true;
        if (model is IBatchedLanguageModel { PrefillChunkPositions: > 0 } chunked && maxPositions < int.MaxValue)
            done = chunked.PrefillPart(cache, prompt, maxPositions, _logits, cancellationToken);
        else model.Prefill(cache, prompt, _logits, cancellationToken);
        _prefillMs += sw.Elapsed.TotalMilliseconds;
        if (!done) return false;
        conversation.SetPrompt(_keys);
        var rules = new DecodeRules(model.EndOfSequenceId, model.BeginningOfSequenceId,
            [.. options.StopTokenSequences.Select(q => q.ToArray()), .. options.StopTokenIds.Select(id => new[] { id })]);
        _generator = Generator.Start(new CacheStepper(model, cache), _logits, options, rules);
        return true;
    }

    /// <summary>One token (or one beam step): an update to stream, null while beams are still running.</summary>
    public GenerationUpdate? Next()
    {
        var feed = BeginNext();
        if (!feed.IsEmpty) model.Step(conversation.Cache, feed, FeedLogits);
        return CompleteNext();
    }

    /// <summary>
    /// The first half of <see cref="Next"/> for the engine's batched decode: the token to append to each of the cache's
    /// rows (nothing when the next token needs no forward). The engine steps the cache beside others, writes the rows'
    /// logits into <see cref="FeedLogits"/>, then calls <see cref="CompleteNext"/>.
    /// </summary>
    public ReadOnlySpan<int> BeginNext()
    {
        var gen = _generator ?? throw new InvalidOperationException("Prefill first.");
        if (_finished) throw new InvalidOperationException("The generation has finished.");
        _decode.Start();
        return gen.Finish is null ? gen.BeginStep() : [];
    }

    /// <summary>Where the fed rows' logits go.</summary>
    public Span<float> FeedLogits => (_generator ?? throw new InvalidOperationException("Prefill first.")).FeedLogits;

    /// <summary>The second half of <see cref="Next"/>: an update to stream, null while beams are still running.</summary>
    public GenerationUpdate? CompleteNext()
    {
        var gen = _generator ?? throw new InvalidOperationException("Prefill first.");
        var more = gen.Finish is null;
        var token = -1;
        if (more) gen.CompleteStep(out token);
        _decode.Stop();
        if (gen is BeamSearch) return gen.Finish is null ? null : FinishBeams(gen.Result);
        if (!more) return Finish(gen.Finish!.Value, EndText(_text.Flush()), []);
        _tokens.Add(token);
        conversation.SyncGenerated(_keys.Length, _tokens);
        var text = _text.Append(token);
        if (_stops is not null)
        {
            text = _stops.Push(text, out var stopped);
            if (stopped) return Finish(MiniGptFinishReason.Stop, text, [token]);
        }
        return new GenerationUpdate(text, [token]);
    }

    private GenerationUpdate FinishBeams(GenerationResult result)
    {
        _tokens.AddRange(result.TokenIds);
        // Beam rows diverged: keep only the shared prompt in the cache.
        conversation.ResetToPrompt(_keys.Length);
        return Finish(result.Finish!.Value, EndText(model.Detokenize(_tokens, skipSpecialTokens: true)), _tokens.ToArray(), result.SequenceScore);
    }

    /// <summary>The last text of a run through the stop matcher, with whatever it still holds back.</summary>
    private string EndText(string text) => _stops is null ? text : _stops.Push(text, out _) + _stops.Flush();

    private GenerationUpdate Finish(MiniGptFinishReason reason, string text, IReadOnlyList<int> ids, double? score = null)
    {
        _finished = true;
        Dispose();
        var decodeMs = _decode.Elapsed.TotalMilliseconds;
        var steps = Math.Max(0, _tokens.Count - 1);
        var usage = new MiniGptUsage(_keys.Length, _tokens.Count, prompt.SkipLeft, _reused, _keys.Length - _reused)
        {
            ImagePromptTokens = _keys.Count(k => k < 0),
        };
        var timings = new MiniGptTimings(0, _prefillMs, decodeMs, decodeMs > 0 ? steps / (decodeMs / 1000.0) : 0);
        return new GenerationUpdate(text, ids, reason, usage, timings, score);
    }

    /// <summary>Frees the sampler (also when the caller abandons the run early).</summary>
    public void Dispose()
    {
        _generator?.Dispose();
        _generator = null;
    }

    /// <summary>The keys of prompt positions, for longest-common-prefix reuse of a cache.</summary>
    private static long[] PositionKeys(PromptSequence prompt)
    {
        var keys = new List<long>(prompt.Length);
        foreach (var part in prompt.Parts)
        {
            if (part is TokenPart tokens) keys.AddRange(tokens.Ids.Select(i => (long)i));
            else
            {
                var img = ((ImagePart)part).Embeddings;
                for (var i = 0; i < img.TokenCount; i++) keys.Add(ImageKey(img, i));
            }
        }
        return keys.Skip(prompt.SkipLeft).ToArray();
    }

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<ImageEmbeddings, object> ImageIds = new();
    private static long _nextImageId;

    internal static long ImageIdentity(ImageEmbeddings img) =>
        (long)ImageIds.GetValue(img, _ => Interlocked.Increment(ref _nextImageId));

    /// <summary>The cache key of position <paramref name="index"/> of image <paramref name="img"/> (negative; text keys are token ids).</summary>
    internal static long ImageKey(ImageEmbeddings img, int index) => -(ImageIdentity(img) * 1_000_000L + index) - 1;
}
