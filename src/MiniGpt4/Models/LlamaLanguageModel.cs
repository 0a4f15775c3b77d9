using MiniGpt4.Abstractions;
using MiniGpt4.Language;
using MiniGpt4.Runtime;
using MiniGpt4.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Models;

/// <summary>
/// <see cref="ILanguageModel"/> over a LLaMA-family decoder and its SentencePiece tokenizer. Each prefill
/// or step runs synchronously under the model's <see cref="ComputeGate"/> (so disposal waits for the call
/// in flight) inside its own dispose scope and inference mode; its caches are <see cref="LlamaSession"/>s.
/// </summary>
internal sealed class LlamaLanguageModel : ILanguageModel, IBatchedLanguageModel
{
    private readonly LlamaForCausalLM _model;
    private readonly ComputeGate _gate = new(nameof(LlamaLanguageModel));

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
        var dir = CheckTokenizer(folder, tokenizerPath);
        return tokenizerPath is null
            ? LlamaTextTokenizer.FromDirectory(dir, padToken: "$$")
            : LlamaTextTokenizer.FromFile(tokenizerPath, padToken: "$$");
    }

    /// <summary>Throws when the tokenizer file <see cref="LoadTokenizer"/> would read does not exist; returns the language model's folder.</summary>
    public static string CheckTokenizer(string folder, string? tokenizerPath)
    {
        var dir = Directory.Exists(folder) ? folder : Path.GetDirectoryName(folder)!;
        var tokPath = tokenizerPath ?? Path.Combine(dir, "tokenizer.model");
        if (!File.Exists(tokPath))
            throw new MiniGptConfigurationException($"Tokenizer not found: '{tokPath}' (a SentencePiece tokenizer.model is expected beside the language model).");
        return dir;
    }

    internal LlamaForCausalLM Model => _model;

    /// <summary>
    /// Folds MiniGPT-v2's LoRA adapters (q_proj, v_proj; keys under <c>llama_model.base_model.model.</c>)
    /// from the opened stage checkpoint <paramref name="stage"/> into the weights. The rank comes from the shapes.
    /// </summary>
    internal int MergeLora(Weights.IWeightSource stage, double alpha)
    {
        using var llm = Weights.WeightSourceExtensions.WithPrefix(stage, "llama_model.base_model.model.");
        var merged = _model.MergeLora(llm, alpha);
        if (merged.Count == 0)
            throw new MiniGptWeightsException($"{stage.Description} holds no LoRA adapters (llama_model.base_model.model.*.lora_A/B), which MiniGPT-v2 needs.", stage.Description);
        return merged.Count;
    }

    /// <summary>Diagnostics (parity tests): sees each prefill's full prompt embeddings <c>[1,L,H]</c> and its logits <c>[1,V]</c>.</summary>
    internal Action<Tensor, Tensor>? PrefillObserver { get; set; }
    internal LlamaTextTokenizer Tokenizer { get; }

    /// <inheritdoc />
    public int VocabSize => _model.Config.VocabSize;
    /// <inheritdoc />
    public int HiddenSize => _model.Config.HiddenSize;
    /// <inheritdoc />
    public int ContextLength { get; }
    /// <inheritdoc />
    public int BeginningOfSequenceId => Tokenizer.BosId;
    /// <inheritdoc />
    public int EndOfSequenceId => Tokenizer.EosId;
    /// <inheritdoc />
    public long CacheBytesPerPosition => LlamaSession.BytesPerPosition(_model.Config, _model.DType);

    /// <inheritdoc />
    public IReadOnlyList<int> Tokenize(string text, bool addBos) => Tokenizer.Encode(text, addBos);

    /// <inheritdoc />
    public string Detokenize(IReadOnlyList<int> ids, bool skipSpecialTokens = true) => Tokenizer.Decode(ids, skipSpecialTokens);

    /// <inheritdoc />
    public LanguageModelCache CreateCache()
    {
        ObjectDisposedException.ThrowIf(_gate.IsClosed, this);
        return new LlamaCache(this, _gate.Run(() => _model.CreateSession(ContextLength)));
    }

    /// <inheritdoc />
    public void Prefill(LanguageModelCache cache, PromptSequence prompt, Span<float> logits, CancellationToken cancellationToken = default)
        => PrefillPart(cache, prompt, int.MaxValue, logits, cancellationToken);

    /// <inheritdoc />
    /// <remarks>Where the prefill runs through the CPU decoder (each position a decode step at that position, so parts
    /// change nothing); libtorch's prefill sums differently for other chunk shapes and prefills whole prompts.</remarks>
    public int PrefillChunkPositions => _model.DecoderPrefill && _model.Decoder is not null ? 2 * LlamaSession.DecoderPrefillChunk : 0;

    /// <inheritdoc />
    public bool PrefillPart(LanguageModelCache cache, PromptSequence prompt, int maxPositions, Span<float> logits, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxPositions, 1);
        var session = SessionOf(cache);
        var length = prompt.Length - prompt.SkipLeft;
        if (session.Rows != 1) throw new ArgumentException("Prefill needs a cache of one row.", nameof(cache));
        if (session.Length >= length) throw new ArgumentException($"The cache already holds {session.Length} positions of a {length}-position prompt.", nameof(prompt));
        using var held = _gate.Enter(cancellationToken);
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var embeds = EmbedPrompt(prompt);
        var end = (int)Math.Min(length, (long)session.Length + maxPositions);
        if (end < length)
        {
            session.PrefillWithoutLogits(embeds[.., session.Length..end, ..], cancellationToken);
            return false;
        }
        var last = session.Prefill(embeds[.., session.Length.., ..], cancellationToken);
        PrefillObserver?.Invoke(embeds, last);
        last.CopyTo(logits);
        return true;
    }

    /// <inheritdoc />
    public void Step(LanguageModelCache cache, ReadOnlySpan<int> tokenPerRow, Span<float> logits)
    {
        var session = SessionOf(cache);
        using var held = _gate.Enter();
        using var scope = NewDisposeScope();
        session.Step(tokenPerRow, logits);
    }

    /// <inheritdoc />
    public void StepBatch(ReadOnlySpan<LanguageModelCache> caches, ReadOnlySpan<int> tokens, Span<float> logits)
    {
        var sessions = new LlamaSession[caches.Length];
        for (var i = 0; i < caches.Length; i++) sessions[i] = SessionOf(caches[i]);
        using var held = _gate.Enter();
        using var scope = NewDisposeScope();
        LlamaSession.StepMany(sessions, tokens, logits);
    }

    private LlamaSession SessionOf(LanguageModelCache cache) =>
        cache is LlamaCache own && own.Model == this
            ? own.Session
            : throw new ArgumentException("The cache was created by another language model.", nameof(cache));

    /// <summary>Embeds a prompt (text runs looked up in embed_tokens, image rows spliced in): <c>[1, L, H]</c>.</summary>
    private Tensor EmbedPrompt(PromptSequence prompt)
    {
        var parts = new List<Tensor>();
        foreach (var part in prompt.Parts)
        {
            if (part is TokenPart { Ids.Count: > 0 } tokens)
                parts.Add(_model.EmbedTokens(tensor(tokens.Ids.Select(i => (long)i).ToArray(), new long[] { 1, tokens.Ids.Count }, device: _model.Device)));
            else if (part is ImagePart image)
            {
                var img = image.Embeddings.ToTorch();
                parts.Add(img.to(_model.DType, _model.Device).reshape(1, -1, img.shape[^1]));
            }
        }
        var all = cat(parts, 1);
        return prompt.SkipLeft > 0 ? all[.., prompt.SkipLeft.., ..] : all;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        // Waits for the call in flight; later calls throw ObjectDisposedException.
        _gate.Close(_model.Dispose);
    }

    /// <summary>A <see cref="LlamaSession"/> as a <see cref="LanguageModelCache"/>; freed under the model's gate.</summary>
    private sealed class LlamaCache(LlamaLanguageModel model, LlamaSession session) : LanguageModelCache
    {
        private bool _disposed;

        public LlamaLanguageModel Model => model;

        public LlamaSession Session
        {
            get
            {
                ObjectDisposedException.ThrowIf(_disposed, this);
                return session;
            }
        }

        public override int Length => _disposed ? 0 : session.Length;
        public override int Rows => session.Rows;
        public override long AllocatedBytes => session.AllocatedBytes;

        public override void Reserve(int positions) => Locked(s => s.Reserve(positions));

        public override void Truncate(int length) => Locked(s => s.Truncate(length));

        public override void ReorderRows(ReadOnlySpan<int> source)
        {
            using var held = model._gate.Enter();
            Session.ReorderRows(source);
        }

        public override IDisposable Save(int fromPosition) => model._gate.Run(() => Session.Save(fromPosition));

        public override void Restore(IDisposable saved) => Locked(s =>
        {
            var snapshot = (LlamaSession.Snapshot)saved;
            if (s.Rows != snapshot.Rows) s.ReorderRows([0]);
            s.Restore(snapshot);
        });

        private void Locked(Action<LlamaSession> work)
        {
            using var held = model._gate.Enter();
            work(Session);
        }

        public override void Dispose()
        {
            if (_disposed) return;
            _disposed = true;
            // A step on this cache may be running on another thread: free after it.
            model._gate.RunAlways(session.Dispose);
        }
    }
}
