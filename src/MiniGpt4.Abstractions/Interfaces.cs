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
/// A causal language model with its tokenizer: tokenizes, and generates from prompts that mix text
/// tokens and image embeddings, with an optional reusable key/value cache. It speaks in tokens and
/// embeddings; which ids begin or end a sequence is the implementation's own business.
/// </summary>
public interface ILanguageModel : IDisposable
{
    /// <summary>Vocabulary size (logits width).</summary>
    int VocabSize { get; }

    /// <summary>Hidden size (embedding width).</summary>
    int HiddenSize { get; }

    /// <summary>Largest number of positions (prompt plus new tokens) one generation may use.</summary>
    int ContextLength { get; }

    /// <summary>Token ids of <paramref name="text"/> (special tokens in the text become their ids).</summary>
    IReadOnlyList<int> Tokenize(string text, bool addBos);

    /// <summary>Text of <paramref name="ids"/>.</summary>
    string Detokenize(IReadOnlyList<int> ids, bool skipSpecialTokens = true);

    /// <summary>A key/value cache for a conversation; reusing it across calls skips the common prompt prefix.</summary>
    LanguageModelCache CreateCache();

    /// <summary>
    /// Generates from <paramref name="prompt"/>, streaming text deltas. The last update carries the finish
    /// reason and the usage. Throws <see cref="ArgumentException"/> when the prompt plus
    /// <see cref="GenerationOptions.MaxNewTokens"/> exceeds <see cref="ContextLength"/>.
    /// </summary>
    IAsyncEnumerable<GenerationUpdate> GenerateAsync(PromptSequence prompt, GenerationOptions options,
        LanguageModelCache? cache = null, CancellationToken cancellationToken = default);
}

/// <summary>An opaque key/value cache owned by a conversation; dispose it to free its memory.</summary>
public abstract class LanguageModelCache : IDisposable
{
    /// <summary>Positions currently cached.</summary>
    public abstract int Length { get; }

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
