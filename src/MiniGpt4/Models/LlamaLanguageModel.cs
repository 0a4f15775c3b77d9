using System.Runtime.CompilerServices;
using MiniGpt4.Abstractions;
using MiniGpt4.Generation;
using MiniGpt4.Language;
using MiniGpt4.Runtime;
using MiniGpt4.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Models;

/// <summary>
/// <see cref="ILanguageModel"/> over a LLaMA-family decoder, its SentencePiece tokenizer and the
/// generation engine (<see cref="GenerationRun"/>). Native calls are serialised per model by a
/// <see cref="ComputeGate"/> held for one prefill or step at a time, so several generations interleave
/// their steps and a stream left unread blocks nobody; all tensor work happens in synchronous calls, so
/// no dispose scope or inference-mode guard crosses an await.
/// </summary>
internal sealed class LlamaLanguageModel : ILanguageModel
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
        var dir = Directory.Exists(folder) ? folder : Path.GetDirectoryName(folder)!;
        var tokPath = tokenizerPath ?? Path.Combine(dir, "tokenizer.model");
        if (!File.Exists(tokPath))
            throw new MiniGptConfigurationException($"Tokenizer not found: '{tokPath}' (a SentencePiece tokenizer.model is expected beside the language model).");
        return tokenizerPath is null
            ? LlamaTextTokenizer.FromDirectory(dir, padToken: "$$")
            : LlamaTextTokenizer.FromFile(tokPath, padToken: "$$");
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

    /// <summary>Diagnostics (parity tests): sees each prompt's full embeddings <c>[1,L,H]</c> and first logits <c>[1,V]</c>.</summary>
    internal Action<Tensor, Tensor>? PrefillObserver { get; set; }
    internal LlamaTextTokenizer Tokenizer { get; }

    /// <inheritdoc />
    public int VocabSize => _model.Config.VocabSize;
    /// <inheritdoc />
    public int HiddenSize => _model.Config.HiddenSize;
    /// <inheritdoc />
    public int ContextLength { get; }
    /// <summary>Beginning-of-sequence id.</summary>
    public int BosId => Tokenizer.BosId;
    /// <summary>End-of-sequence id.</summary>
    public int EosId => Tokenizer.EosId;

    /// <inheritdoc />
    public IReadOnlyList<int> Tokenize(string text, bool addBos) => Tokenizer.Encode(text, addBos);

    /// <inheritdoc />
    public string Detokenize(IReadOnlyList<int> ids, bool skipSpecialTokens = true) => Tokenizer.Decode(ids, skipSpecialTokens);

    /// <inheritdoc />
    public LanguageModelCache CreateCache()
    {
        ObjectDisposedException.ThrowIf(_gate.IsClosed, this);
        return new KvCache(this, _gate, () => _model.CreateSession(ContextLength));
    }

    /// <summary>The gate every native call on this model runs under.</summary>
    internal ComputeGate Gate => _gate;

    /// <summary>Embeds a prompt (text runs looked up in embed_tokens, image rows spliced in): <c>[1, L, H]</c>.</summary>
    internal Tensor EmbedPrompt(PromptSequence prompt)
    {
        using var scope = NewDisposeScope();
        using var _ = inference_mode();
        var parts = new List<Tensor>();
        foreach (var part in prompt.Parts)
        {
            if (part is TokenPart tokens)
            {
                var ids = tokens.Ids;
                if (ids.Count == 0) continue;
                var idt = tensor(ids.Select(i => (long)i).ToArray(), new long[] { 1, ids.Count }, dtype: ScalarType.Int64, device: _model.Device);
                parts.Add(_model.EmbedTokens(idt));
            }
            else
            {
                var img = ((ImagePart)part).Embeddings.ToTorch();
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
        ObjectDisposedException.ThrowIf(_gate.IsClosed, this);
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var promptLength = prompt.Length - prompt.SkipLeft;
        if (promptLength <= 0) throw new ArgumentException("The prompt is empty.", nameof(prompt));
        if (promptLength + options.MaxNewTokens > ContextLength)
            throw new MiniGptContextLengthException(
                $"The prompt ({promptLength} positions) plus MaxNewTokens ({options.MaxNewTokens}) exceeds the model's context ({ContextLength}).",
                promptLength, options.MaxNewTokens, ContextLength);
        if (cache is not null && (cache is not KvCache kc || kc.Owner != this))
            throw new ArgumentException("The cache was created by another language model.", nameof(cache));
        cancellationToken.ThrowIfCancellationRequested();

        var owned = cache is null ? (KvCache)CreateCache() : null;
        var kv = owned ?? (KvCache)cache!;
        kv.BeginTurn();
        var run = new GenerationRun(RunModel, prompt, options, kv) { PrefillObserver = PrefillObserver };
        var finished = false;
        try
        {
            // Each native call holds the gate for itself only: never while the caller has control.
            await _gate.RunAsync(() => { run.Prefill(cancellationToken); return true; }, cancellationToken).ConfigureAwait(false);
            while (true)
            {
                cancellationToken.ThrowIfCancellationRequested();
                var update = await _gate.RunAsync(run.Next, cancellationToken).ConfigureAwait(false);
                if (update is null) continue;
                finished = update.FinishReason is not null;
                yield return update;
                if (finished) break;
            }
        }
        finally
        {
            run.Dispose();
            if (!finished) kv.Rollback();
            kv.EndTurn();
            owned?.Dispose();
        }
    }

    private GenerationRun.Model RunModel => _runModel ??= new GenerationRun.Model(EosId, BosId, Tokenizer, EmbedPrompt);
    private GenerationRun.Model? _runModel;

    /// <summary>Bytes of KV cache one position takes (one row).</summary>
    internal long KvBytesPerPosition => LlamaSession.BytesPerPosition(_model.Config, _model.DType);

    /// <inheritdoc />
    public void Dispose()
    {
        // Waits for the step in flight; later calls throw ObjectDisposedException.
        _gate.Close(_model.Dispose);
    }
}
