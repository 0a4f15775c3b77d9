using System.Diagnostics;
using MiniGpt4.Abstractions;
using MiniGpt4.Text;
using static TorchSharp.torch;

namespace MiniGpt4.Generation;

/// <summary>
/// One answer over a <see cref="KvCache"/>: <see cref="Prefill"/> (reusing the cache's longest common
/// prefix), then one token per <see cref="Next"/> (greedy or sampling), or one beam step per call
/// (beam search, the best hypothesis at the end), with stop strings, streaming detokenisation, usage,
/// timings and the finish reason. Each call is synchronous and does its tensor work in its own dispose
/// scope; the caller runs each call under the model's <see cref="ComputeGate"/> and checks cancellation
/// between calls.
/// </summary>
internal sealed class GenerationRun : IDisposable
{
    /// <summary>What a run needs of its language model.</summary>
    internal sealed record Model(int EosId, int BosId, LlamaTextTokenizer Tokenizer, Func<PromptSequence, Tensor> Embed);

    private readonly Model _model;
    private readonly PromptSequence _prompt;
    private readonly GenerationOptions _options;
    private readonly KvCache _cache;
    private readonly long[] _keys;
    private readonly IncrementalDetokenizer _detok;
    private readonly StopStringMatcher? _stops;
    private readonly List<int> _tokens = new();
    private readonly Stopwatch _decode = new();
    private Generator? _generator;
    private int _reused, _prefilled;
    private double _prefillMs;
    private bool _finished;

    public GenerationRun(Model model, PromptSequence prompt, GenerationOptions options, KvCache cache)
    {
        _model = model; _prompt = prompt; _options = options; _cache = cache;
        _keys = PositionKeys(prompt);
        _detok = model.Tokenizer.CreateDetokenizer(skipSpecialTokens: true);
        _stops = options.StopStrings.Count > 0 ? new StopStringMatcher(options.StopStrings) : null;
    }

    /// <summary>Diagnostics (parity tests): sees the prompt's full embeddings <c>[1,L,H]</c> and first logits <c>[1,V]</c>.</summary>
    public Action<Tensor, Tensor>? PrefillObserver { get; init; }

    /// <summary>Computes the prompt's keys/values after the reused prefix and the first logits; cancellable between layers.</summary>
    public void Prefill(CancellationToken cancellationToken)
    {
        var sw = Stopwatch.StartNew();
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var session = _cache.Session;
        // Left truncation (the reference's) shifts every position: nothing cached stays valid.
        var common = _prompt.SkipLeft > 0 ? 0 : _cache.CommonPrefix(_keys);
        common = Math.Min(common, _keys.Length - 1); // at least one position yields the first logits
        _cache.KeepPrefix(common);
        session.Reserve(_keys.Length + _options.MaxNewTokens);
        var embeds = _model.Embed(_prompt);
        var rest = embeds[.., common.., ..];
        var logits = session.Prefill(rest, cancellationToken);
        PrefillObserver?.Invoke(embeds, logits);
        _cache.SetKeys(_keys);
        _reused = common;
        _prefilled = _keys.Length - common;
        _generator = new Generator(session, logits, _options, Rules());
        _prefillMs = sw.Elapsed.TotalMilliseconds;
    }

    private DecodeRules Rules() => new(_model.EosId, _model.BosId,
        [.. _options.StopTokenSequences.Select(q => q.ToArray()), .. _options.StopTokenIds.Select(id => new[] { id })]);

    /// <summary>One token (or one beam step): an update to stream, null while beams are still running.</summary>
    public GenerationUpdate? Next()
    {
        var gen = _generator ?? throw new InvalidOperationException("Prefill first.");
        if (_finished) throw new InvalidOperationException("The generation has finished.");
        if (gen.IsBeamSearch) return BeamStep(gen);
        _decode.Start();
        bool more;
        int token;
        using (var scope = NewDisposeScope())
        using (inference_mode())
            more = gen.TryStep(out token);
        _decode.Stop();
        if (!more) return Finish(gen.Finish ?? MiniGptFinishReason.Length);
        _tokens.Add(token);
        _cache.SyncGenerated(_keys.Length, _tokens);
        var text = _detok.Append(token);
        if (_stops is not null)
        {
            text = _stops.Push(text, out var stopped);
            if (stopped) return Finish(MiniGptFinishReason.Stop, text, token);
        }
        return new GenerationUpdate(text, new[] { token });
    }

    private GenerationUpdate? BeamStep(Generator gen)
    {
        _decode.Start();
        using (var scope = NewDisposeScope())
        using (inference_mode())
            gen.TryBeamStep();
        _decode.Stop();
        if (gen.Finish is null) return null;
        var result = gen.Result;
        _tokens.AddRange(result.TokenIds);
        // Beam rows diverged: keep only the shared prompt in the cache.
        _cache.ResetToPrompt(_keys.Length);
        var text = _model.Tokenizer.Decode(_tokens, skipSpecialTokens: true);
        if (_stops is not null)
        {
            var emitted = _stops.Push(text, out var stopped);
            text = stopped ? emitted : emitted + _stops.Flush();
        }
        return Finish(result.Finish!.Value, text, null, result.SequenceScore, allTokens: true);
    }

    private GenerationUpdate Finish(MiniGptFinishReason reason, string text = "", int? lastToken = null, double? score = null, bool allTokens = false)
    {
        _finished = true;
        Dispose();
        if ((reason != MiniGptFinishReason.Stop || lastToken is null) && !allTokens)
        {
            // Flush whatever the detokenizer and the stop matcher still hold.
            var tail = _detok.Flush();
            text += _stops is null ? tail : _stops.Push(tail, out _) + _stops.Flush();
        }
        var decodeMs = _decode.Elapsed.TotalMilliseconds;
        var steps = Math.Max(0, _tokens.Count - 1);
        var usage = new MiniGptUsage(_keys.Length, _tokens.Count, _prompt.SkipLeft, _reused, _prefilled);
        var timings = new MiniGptTimings(0, _prefillMs, decodeMs, decodeMs > 0 ? steps / (decodeMs / 1000.0) : 0);
        IReadOnlyList<int> ids = allTokens ? _tokens.ToArray() : lastToken is null ? Array.Empty<int>() : new[] { lastToken.Value };
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
                var id = ImageIdentity(img);
                for (var i = 0; i < img.TokenCount; i++) keys.Add(-(id * 1_000_000L + i) - 1);
            }
        }
        return keys.Skip(prompt.SkipLeft).ToArray();
    }

    private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<ImageEmbeddings, object> ImageIds = new();
    private static long _nextImageId;

    private static long ImageIdentity(ImageEmbeddings img) =>
        (long)ImageIds.GetValue(img, _ => Interlocked.Increment(ref _nextImageId));
}
