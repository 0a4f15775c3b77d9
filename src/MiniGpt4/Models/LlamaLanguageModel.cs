using System.Diagnostics;
using System.Runtime.CompilerServices;
using MiniGpt4.Abstractions;
using MiniGpt4.Generation;
using MiniGpt4.Language;
using MiniGpt4.Runtime;
using MiniGpt4.Text;
using TorchSharp;
using static TorchSharp.torch;
using Generator = MiniGpt4.Generation.Generator;

namespace MiniGpt4.Models;

/// <summary>
/// <see cref="ILanguageModel"/> over a LLaMA-family decoder, its SentencePiece tokenizer and the
/// generation engine. One generation runs at a time per model (a gate serialises callers); all
/// tensor work happens in synchronous steps, so no dispose scope or inference-mode guard crosses an await.
/// </summary>
internal sealed class LlamaLanguageModel : ILanguageModel
{
    private readonly LlamaForCausalLM _model;
    private readonly SemaphoreSlim _gate = new(1, 1);
    private bool _disposed;

    internal LlamaLanguageModel(LlamaForCausalLM model, LlamaTextTokenizer tokenizer, int contextLength)
    {
        _model = model;
        Tokenizer = tokenizer;
        ContextLength = contextLength;
    }

    /// <summary>
    /// The tokenizer of a Hugging Face LLaMA folder (or the given <c>tokenizer.model</c>) with MiniGPT-4's pad
    /// token <c>$$</c>; a folder's added_tokens.json (Vicuna v0's [PAD]) is honoured.
    /// </summary>
    public static LlamaTextTokenizer LoadTokenizer(string folder, string? tokenizerPath)
    {
        var dir = Directory.Exists(folder) ? folder : Path.GetDirectoryName(folder)!;
        var tokPath = tokenizerPath ?? Path.Combine(dir, "tokenizer.model");
        if (!File.Exists(tokPath))
            throw new MiniGptConfigurationException($"Tokenizer not found: '{tokPath}' (a SentencePiece tokenizer.model is expected beside the language model).");
        return tokenizerPath is null
            ? LlamaTextTokenizer.FromDirectory(dir, padToken: "$$")
            : LlamaTextTokenizer.FromFile(tokPath, padToken: "$$");
    }

    /// <summary>Loads a Hugging Face LLaMA folder (config.json, weights) with an already loaded tokenizer.</summary>
    public static LlamaLanguageModel Load(string folder, LlamaTextTokenizer tokenizer, ScalarType dtype, Device device,
        int? contextLength, IProgress<double>? progress = null)
    {
        NativeRuntime.EnsureLoaded();
        var model = LlamaForCausalLM.Load(folder, dtype, device, progress);
        var maxPos = model.Config.MaxPositionEmbeddings;
        var ctx = Math.Min(contextLength ?? maxPos, maxPos);
        return new LlamaLanguageModel(model, tokenizer, ctx);
    }

    internal LlamaForCausalLM Model => _model;

    /// <summary>
    /// Folds MiniGPT-v2's LoRA adapters (q_proj, v_proj; keys under <c>llama_model.base_model.model.</c>)
    /// from <paramref name="checkpoint"/> into the weights. The rank comes from the shapes.
    /// </summary>
    internal int MergeLora(string checkpoint, double alpha)
    {
        using var file = Weights.WeightFiles.Open(checkpoint);
        using var llm = Weights.WeightSourceExtensions.WithPrefix(file, "llama_model.base_model.model.");
        var merged = _model.MergeLora(llm, alpha);
        if (merged.Count == 0)
            throw new MiniGptWeightsException($"'{checkpoint}' holds no LoRA adapters (llama_model.base_model.model.*.lora_A/B), which MiniGPT-v2 needs.", checkpoint);
        return merged.Count;
    }

    /// <summary>Diagnostics (parity tests): sees each prompt's full embeddings <c>[1,L,H]</c> and first logits <c>[1,V]</c>.</summary>
    internal Action<Tensor, Tensor>? PrefillObserver { get; set; }
    internal LlamaTextTokenizer Tokenizer { get; }

    /// <inheritdoc />
    public int VocabSize => _model.Config.VocabSize;
    /// <inheritdoc />
    public int HiddenSize => _model.Config.HiddenSize;
    /// <inheritdoc />
    public int ContextLength { get; }
    /// <inheritdoc />
    public int BosId => Tokenizer.BosId;
    /// <inheritdoc />
    public int EosId => Tokenizer.EosId;

    /// <inheritdoc />
    public IReadOnlyList<int> Tokenize(string text, bool addBos) => Tokenizer.Encode(text, addBos);

    /// <inheritdoc />
    public string Detokenize(IReadOnlyList<int> ids, bool skipSpecialTokens = true) => Tokenizer.Decode(ids, skipSpecialTokens);

    /// <inheritdoc />
    public string TokenPiece(int id) => Tokenizer.IdToPiece(id);

    /// <inheritdoc />
    public LanguageModelCache CreateCache() => new LlamaCache(this);

    /// <summary>Embeds a prompt (text runs looked up in embed_tokens, image rows spliced in): <c>[1, L, H]</c>.</summary>
    internal Tensor EmbedPrompt(PromptSequence prompt)
    {
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var parts = new List<Tensor>();
        foreach (var part in prompt.Parts)
        {
            if (part is int[] ids)
            {
                if (ids.Length == 0) continue;
                var idt = tensor(ids.Select(i => (long)i).ToArray(), new long[] { 1, ids.Length }, dtype: ScalarType.Int64, device: _model.Device);
                parts.Add(_model.EmbedTokens(idt));
            }
            else
            {
                var img = ((ImageEmbeddings)part).Tensor;
                parts.Add(img.to(_model.DType, _model.Device).reshape(1, -1, img.shape[^1]));
            }
        }
        var all = cat(parts, 1);
        if (prompt.SkipLeft > 0) all = all[.., prompt.SkipLeft.., ..];
        return all.contiguous().MoveToOuterDisposeScope();
    }

    /// <inheritdoc />
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(PromptSequence prompt, GenerationOptions options,
        LanguageModelCache? cache = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var promptLength = prompt.Length - prompt.SkipLeft;
        if (promptLength <= 0) throw new ArgumentException("The prompt is empty.", nameof(prompt));
        if (promptLength + options.MaxNewTokens > ContextLength)
            throw new ArgumentException($"The prompt ({promptLength} positions) plus MaxNewTokens ({options.MaxNewTokens}) exceeds the model's context ({ContextLength}).", nameof(prompt));
        if (cache is not null && (cache is not LlamaCache lc || lc.Owner != this))
            throw new ArgumentException("The cache was created by another language model.", nameof(cache));

        await _gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        LlamaCache? ownedCache = null;
        try
        {
            var kv = (LlamaCache?)cache ?? (ownedCache = new LlamaCache(this));
            using var run = new Run(this, prompt, options, kv, cancellationToken);
            // Prefill on a pool thread: seconds of work for long prompts.
            await Task.Run(run.Prefill, cancellationToken).ConfigureAwait(false);
            while (true)
            {
                GenerationUpdate? update;
                if (cancellationToken.IsCancellationRequested) update = run.Cancel();
                else update = await Task.Run(run.Next, CancellationToken.None).ConfigureAwait(false);
                if (update is null) continue;
                yield return update;
                if (update.FinishReason is not null) break;
            }
        }
        finally
        {
            ownedCache?.Dispose();
            _gate.Release();
        }
    }

    /// <summary>The keys of prompt positions, for longest-common-prefix reuse of a cache.</summary>
    private static long[] PositionKeys(PromptSequence prompt)
    {
        var keys = new List<long>(prompt.Length);
        foreach (var part in prompt.Parts)
        {
            if (part is int[] ids) keys.AddRange(ids.Select(i => (long)i));
            else
            {
                var img = (ImageEmbeddings)part;
                var id = ImageIdentity(img);
                for (var i = 0; i < img.TokenCount; i++) keys.Add(-(id * 1_000_000L + i) - 1);
            }
        }
        return keys.Skip(prompt.SkipLeft).ToArray();
    }

    private static readonly ConditionalWeakTable<ImageEmbeddings, object> ImageIds = new();
    private static long _nextImageId;

    private static long ImageIdentity(ImageEmbeddings img) =>
        (long)ImageIds.GetValue(img, _ => Interlocked.Increment(ref _nextImageId));

    /// <summary>One generation: prefill, then one token per <see cref="Next"/>.</summary>
    private sealed class Run : IDisposable
    {
        private readonly LlamaLanguageModel _lm;
        private readonly PromptSequence _prompt;
        private readonly GenerationOptions _options;
        private readonly LlamaCache _cache;
        private readonly long[] _keys;
        private readonly IncrementalDetokenizer _detok;
        private readonly StopStringMatcher? _stops;
        private readonly List<int> _tokens = new();
        private Generator? _generator;
        private int _reused, _prefilled;
        private double _prefillMs;
        private readonly Stopwatch _decode = new();
        private bool _finished;

        private readonly CancellationToken _ct;

        public Run(LlamaLanguageModel lm, PromptSequence prompt, GenerationOptions options, LlamaCache cache, CancellationToken ct)
        {
            _lm = lm; _prompt = prompt; _options = options; _cache = cache; _ct = ct;
            _keys = PositionKeys(prompt);
            _detok = lm.Tokenizer.CreateDetokenizer(skipSpecialTokens: true);
            _stops = options.StopStrings.Count > 0 ? new StopStringMatcher(options.StopStrings) : null;
        }

        public void Prefill()
        {
            var sw = Stopwatch.StartNew();
            using var scope = NewDisposeScope();
            using var _ = inference_mode();
            var session = _cache.Session;
            // Left truncation (the reference's) shifts every position: nothing cached stays valid.
            var common = _prompt.SkipLeft > 0 ? 0 : _cache.CommonPrefix(_keys);
            common = Math.Min(common, _keys.Length - 1); // at least one position yields the first logits
            session.Truncate(common);
            _cache.SetKeys(_keys.AsSpan(0, common));
            var embeds = _lm.EmbedPrompt(_prompt);
            var rest = embeds[.., common.., ..];
            var logits = session.Prefill(rest);
            _lm.PrefillObserver?.Invoke(embeds, logits);
            _cache.SetKeys(_keys);
            _reused = common;
            _prefilled = _keys.Length - common;
            _generator = new Generator(session, logits, Settings());
            _prefillMs = sw.Elapsed.TotalMilliseconds;
        }

        private SamplingSettings Settings()
        {
            var suffixes = new List<int[]>();
            suffixes.AddRange(_options.StopTokenSequences.Select(q => q.ToArray()));
            suffixes.AddRange(_options.StopTokenIds.Select(id => new[] { id }));
            return new SamplingSettings(
                DoSample: !_options.IsGreedy,
                Temperature: _options.IsGreedy ? 1f : _options.Temperature,
                TopK: _options.TopK,
                TopP: _options.TopP,
                RepetitionPenalty: _options.RepetitionPenalty,
                MaxNewTokens: _options.MaxNewTokens,
                MinNewTokens: _options.MinNewTokens,
                NumBeams: _options.NumBeams,
                LengthPenalty: _options.LengthPenalty,
                Seed: _options.Seed,
                EosId: _lm.EosId,
                BosId: _lm.BosId,
                StopTokenSuffixes: suffixes);
        }

        public GenerationUpdate? Next()
        {
            var gen = _generator ?? throw new ObjectDisposedException(nameof(Run));
            if (_options.NumBeams > 1) return Beams(gen);
            _decode.Start();
            bool more;
            int token;
            using (var scope = NewDisposeScope())
            using (inference_mode())
                more = gen.TryStep(out token);
            _decode.Stop();
            if (!more) return Finish(gen.Finish ?? FinishReason.Length);
            _tokens.Add(token);
            _cache.SyncGenerated(_keys.Length, _tokens);
            var text = _detok.Append(token);
            if (_stops is not null)
            {
                text = _stops.Push(text, out var stopped);
                if (stopped) return Finish(FinishReason.Stop, text, token);
            }
            return new GenerationUpdate(text, new[] { token });
        }

        private GenerationUpdate Beams(Generator gen)
        {
            _decode.Start();
            GenerationResult result;
            using (var scope = NewDisposeScope())
            using (inference_mode())
                result = gen.RunToEnd(_ct); // cancelled: the best hypothesis so far
            _decode.Stop();
            _tokens.AddRange(result.TokenIds);
            // Beam rows diverged: keep only the shared prompt in the cache.
            _cache.ResetToPrompt(_keys.Length);
            var text = _lm.Tokenizer.Decode(_tokens, skipSpecialTokens: true);
            if (_stops is not null)
            {
                var emitted = _stops.Push(text, out var stopped);
                text = stopped ? emitted : emitted + _stops.Flush();
            }
            return Finish(result.Finish, text, null, result.SequenceScore, allTokens: true);
        }

        public GenerationUpdate Cancel() => Finish(FinishReason.Cancelled);

        private GenerationUpdate Finish(FinishReason reason, string text = "", int? lastToken = null, double? score = null, bool allTokens = false)
        {
            if (_finished) throw new InvalidOperationException("generation already finished");
            _finished = true;
            Dispose();
            if (reason != FinishReason.Stop || lastToken is null)
            {
                // Flush whatever the detokenizer and the stop matcher still hold.
                if (!allTokens)
                {
                    var tail = _detok.Flush();
                    text += _stops is null ? tail : _stops.Push(tail, out _) + _stops.Flush();
                }
            }
            var decodeMs = _decode.Elapsed.TotalMilliseconds;
            var steps = Math.Max(0, _tokens.Count - 1);
            var usage = new MiniGptUsage(_keys.Length, _tokens.Count, _prompt.SkipLeft, _reused, _prefilled);
            var timings = new MiniGptTimings(0, _prefillMs, decodeMs, decodeMs > 0 ? steps / (decodeMs / 1000.0) : 0);
            IReadOnlyList<int> ids = allTokens ? _tokens.ToArray() : lastToken is null ? Array.Empty<int>() : new[] { lastToken.Value };
            return new GenerationUpdate(text, ids, Map(reason), usage, timings, score);
        }

        /// <summary>Frees the sampler; also when the caller abandons the stream early.</summary>
        public void Dispose()
        {
            _generator?.Dispose();
            _generator = null;
        }

        private static MiniGptFinishReason Map(FinishReason r) => r switch
        {
            FinishReason.Stop => MiniGptFinishReason.Stop,
            FinishReason.Length => MiniGptFinishReason.Length,
            _ => MiniGptFinishReason.Cancelled,
        };
    }

    /// <summary>A KV cache plus the keys (token ids / image positions) of what it holds.</summary>
    private sealed class LlamaCache : LanguageModelCache
    {
        private readonly List<long> _keys = new();
        private LlamaSession? _session;

        public LlamaCache(LlamaLanguageModel owner) => Owner = owner;

        public LlamaLanguageModel Owner { get; }

        public LlamaSession Session => _session ??= Owner._model.CreateSession(Owner.ContextLength);

        public override int Length => _session?.Length ?? 0;

        public int CommonPrefix(ReadOnlySpan<long> keys)
        {
            var n = Math.Min(Math.Min(keys.Length, _keys.Count), Length);
            var i = 0;
            while (i < n && keys[i] == _keys[i]) i++;
            return i;
        }

        public void SetKeys(ReadOnlySpan<long> keys)
        {
            _keys.Clear();
            foreach (var k in keys) _keys.Add(k);
        }

        /// <summary>After a step the session holds the prompt plus every generated token but the last.</summary>
        public void SyncGenerated(int promptLength, List<int> tokens)
        {
            while (_keys.Count < Length && _keys.Count - promptLength < tokens.Count) _keys.Add(tokens[_keys.Count - promptLength]);
        }

        public void ResetToPrompt(int promptLength)
        {
            var s = Session;
            s.ReorderRows(new[] { 0 });
            s.Truncate(Math.Min(promptLength, s.Length));
            if (_keys.Count > promptLength) _keys.RemoveRange(promptLength, _keys.Count - promptLength);
        }

        public override void Dispose()
        {
            _session?.Dispose();
            _session = null;
            _keys.Clear();
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        _model.Dispose();
        _gate.Dispose();
    }
}
