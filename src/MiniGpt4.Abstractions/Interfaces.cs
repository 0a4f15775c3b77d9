namespace MiniGpt4.Abstractions;

/// <summary>Turns an image into vision features (EVA-ViT-g in MiniGPT-4).</summary>
public interface IVisionEncoder : IDisposable
{
    /// <summary>The square input size in pixels (224 or 448).</summary>
    int ImageSize { get; }

    /// <summary>Decodes, preprocesses and encodes one image.</summary>
    /// <exception cref="MiniGptImageException">The image cannot be decoded or is refused.</exception>
    VisionFeatures Encode(ImageInput image, CancellationToken cancellationToken = default);
}

/// <summary>Turns vision features into language-model embeddings (Q-Former + projection, or the 4-token concat projection).</summary>
public interface IProjector : IDisposable
{
    /// <summary>Positions one image takes in the prompt (32, 64 or 256).</summary>
    int TokensPerImage { get; }

    /// <summary>The language model's hidden size.</summary>
    int OutputDim { get; }

    /// <summary>Projects one image's features.</summary>
    ImageEmbeddings Project(VisionFeatures features);
}

/// <summary>
/// A causal language model with its tokenizer, at the level of a forward pass: it tokenizes, and computes
/// next-token logits for prompts that mix text tokens and image embeddings into a key/value cache it
/// creates. Decoding (sampling, beams, stops, streaming text) is the library's engine, not the model's:
/// the model speaks in tokens, embeddings and logits. Calls on one model may come from several threads;
/// an implementation serialises its native work itself.
/// </summary>
public interface ILanguageModel : IDisposable
{
    /// <summary>Vocabulary size (logits width).</summary>
    int VocabSize { get; }

    /// <summary>Hidden size (embedding width).</summary>
    int HiddenSize { get; }

    /// <summary>Largest number of positions (prompt plus new tokens) one generation may use.</summary>
    int ContextLength { get; }

    /// <summary>The token that ends a sequence in this model's vocabulary (generation stops at it).</summary>
    int EndOfSequenceId { get; }

    /// <summary>
    /// The token that begins a sequence in this model's vocabulary (generating from embeddings,
    /// transformers counts it as already generated, so the repetition penalty includes it).
    /// </summary>
    int BeginningOfSequenceId { get; }

    /// <summary>Bytes of key/value cache one position of one row takes (for memory admission).</summary>
    long CacheBytesPerPosition { get; }

    /// <summary>Token ids of <paramref name="text"/> (special tokens in the text become their ids).</summary>
    IReadOnlyList<int> Tokenize(string text, bool addBos);

    /// <summary>Text of <paramref name="ids"/>; the library streams text by decoding short windows of ids.</summary>
    string Detokenize(IReadOnlyList<int> ids, bool skipSpecialTokens = true);

    /// <summary>An empty key/value cache of one row.</summary>
    LanguageModelCache CreateCache();

    /// <summary>
    /// Computes the keys and values of <paramref name="prompt"/>'s positions from <see cref="LanguageModelCache.Length"/>
    /// on (the cache already holds the positions before) into <paramref name="cache"/>, which has one row, and writes the
    /// next-token logits after the prompt's last position into <paramref name="logits"/> (<see cref="VocabSize"/> values).
    /// Cancellable between layers: it then throws <see cref="OperationCanceledException"/> and the cache keeps its length.
    /// </summary>
    void Prefill(LanguageModelCache cache, PromptSequence prompt, Span<float> logits, CancellationToken cancellationToken = default);

    /// <summary>
    /// Appends one token to each row of <paramref name="cache"/> and writes each row's next-token logits into
    /// <paramref name="logits"/> (rows × <see cref="VocabSize"/> values, row-major).
    /// </summary>
    void Step(LanguageModelCache cache, ReadOnlySpan<int> tokenPerRow, Span<float> logits);
}

/// <summary>
/// A language model's key/value cache: <see cref="Rows"/> sequences of <see cref="Length"/> positions each.
/// Created by <see cref="ILanguageModel.CreateCache"/> and used with that model only; dispose it to free its memory.
/// </summary>
public abstract class LanguageModelCache : IDisposable
{
    /// <summary>Positions currently cached (per row).</summary>
    public abstract int Length { get; }

    /// <summary>Rows (sequences) held: 1, or the beam count during beam search.</summary>
    public abstract int Rows { get; }

    /// <summary>Bytes the cache holds now.</summary>
    public abstract long AllocatedBytes { get; }

    /// <summary>Makes room for <paramref name="positions"/> positions per row ahead of time (the cache otherwise grows by need).</summary>
    public abstract void Reserve(int positions);

    /// <summary>Keeps the first <paramref name="length"/> positions.</summary>
    public abstract void Truncate(int length);

    /// <summary>Rebuilds the rows so that new row <c>i</c> is a copy of old row <c>source[i]</c> (the count may change, e.g. 1 to k beams).</summary>
    public abstract void ReorderRows(ReadOnlySpan<int> source);

    /// <summary>Saves row 0's positions from <paramref name="fromPosition"/> on, so that <see cref="Restore"/> can put them back.</summary>
    public abstract IDisposable Save(int fromPosition);

    /// <summary>Puts back what <see cref="Save"/> saved: one row, the saved length.</summary>
    public abstract void Restore(IDisposable saved);

    /// <summary>Frees the cache.</summary>
    public abstract void Dispose();
}

/// <summary>A prompt: text token runs and image embeddings in order.</summary>
public sealed class PromptSequence
{
    private readonly List<PromptPart> _parts = new();

    /// <summary>Appends token ids.</summary>
    public PromptSequence AddTokens(IReadOnlyList<int> ids) { _parts.Add(new TokenPart(ids.ToArray())); return this; }

    /// <summary>Appends image embeddings (the sequence does not own them).</summary>
    public PromptSequence AddImage(ImageEmbeddings embeddings) { _parts.Add(new ImagePart(embeddings)); return this; }

    /// <summary>Parts in order: <see cref="TokenPart"/> runs and <see cref="ImagePart"/>s.</summary>
    public IReadOnlyList<PromptPart> Parts => _parts;

    /// <summary>Total positions.</summary>
    public int Length => _parts.Sum(p => p.Length);

    /// <summary>
    /// Positions dropped from the left before the model sees the prompt: set by the pipeline only when
    /// <see cref="GenerationOptions.TruncatePromptFromLeft"/> asks for the reference's truncation.
    /// </summary>
    public int SkipLeft { get; internal set; }
}

/// <summary>One part of a <see cref="PromptSequence"/>.</summary>
public abstract record PromptPart
{
    private protected PromptPart() { }

    /// <summary>Positions the part takes.</summary>
    public abstract int Length { get; }
}

/// <summary>A run of token ids.</summary>
/// <param name="Ids">The ids.</param>
public sealed record TokenPart(IReadOnlyList<int> Ids) : PromptPart
{
    /// <inheritdoc />
    public override int Length => Ids.Count;
}

/// <summary>One image's embeddings (not owned by the part).</summary>
/// <param name="Embeddings">The embeddings.</param>
public sealed record ImagePart(ImageEmbeddings Embeddings) : PromptPart
{
    /// <inheritdoc />
    public override int Length => Embeddings.TokenCount;
}

/// <summary>One streamed piece of a generation.</summary>
/// <param name="Text">New text (may be empty while a multi-byte character or a possible stop string is pending).</param>
/// <param name="TokenIds">The token ids accepted in this step.</param>
/// <param name="FinishReason">Set on the last update.</param>
/// <param name="Usage">Set on the last update.</param>
/// <param name="Timings">Set on the last update.</param>
/// <param name="SequenceScore">Beam search score, on the last update.</param>
public sealed record GenerationUpdate(string Text, IReadOnlyList<int> TokenIds, MiniGptFinishReason? FinishReason = null,
    MiniGptUsage? Usage = null, MiniGptTimings? Timings = null, double? SequenceScore = null);
