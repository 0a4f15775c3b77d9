using System.Runtime.CompilerServices;
using MiniGpt4.Abstractions;
using MiniGpt4.Prompting;

namespace MiniGpt4;

/// <summary>
/// MiniGPT-4 behind one object: a vision encoder, a projector and a language model composed with the
/// variant's prompt template. Load a released model with <see cref="LoadAsync(string, MiniGptLoadOptions?, IProgress{MiniGptProgress}?, CancellationToken)"/>, then ask questions
/// about images with <c>AskAsync</c> / <c>StreamAsync</c>, or hold a conversation with
/// <see cref="CreateSession"/>. Thread-safe: concurrent requests are admitted up to
/// <see cref="MiniGptLoadOptions.MaxConcurrentRequests"/> and within <see cref="MiniGptLoadOptions.MemoryBudgetBytes"/>
/// (more wait in a bounded queue), and their native calls interleave step by step.
/// Disposing it while requests run is safe: they end with <see cref="ObjectDisposedException"/>.
/// </summary>
public sealed class MiniGptPipeline : IDisposable
{
    private readonly bool _ownsComponents;
    private readonly ImageDecodingOptions _imageOptions;
    private int _disposed;

    /// <summary>Composes a pipeline from components (for example your own implementations).</summary>
    /// <param name="variant">Selects the prompt template and template stops.</param>
    /// <param name="visionEncoder">The vision encoder; null for a text-only pipeline.</param>
    /// <param name="projector">The projector; null for a text-only pipeline.</param>
    /// <param name="languageModel">The language model.</param>
    /// <param name="ownsComponents">Dispose the components with the pipeline.</param>
    public MiniGptPipeline(ModelVariant variant, IVisionEncoder? visionEncoder, IProjector? projector, ILanguageModel languageModel, bool ownsComponents = true)
        : this(variant, visionEncoder, projector, languageModel, ownsComponents, new MiniGptLoadOptions())
    {
    }

    internal MiniGptPipeline(ModelVariant variant, IVisionEncoder? visionEncoder, IProjector? projector, ILanguageModel languageModel,
        bool ownsComponents, MiniGptLoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(languageModel);
        if ((visionEncoder is null) != (projector is null))
            throw new ArgumentException("Give both a vision encoder and a projector, or neither.");
        Variant = variant;
        VisionEncoder = visionEncoder;
        Projector = projector;
        LanguageModel = languageModel;
        Preset = ModelPreset.For(variant);
        _ownsComponents = ownsComponents;
        Engine = Generation.GenerationEngine.For(languageModel);
        Engine.ModelName ??= Preset.Name;
        Admission = new Generation.RequestAdmission(Generation.AdmissionLimits.From(options.Validate()), Preset.Name);
        _imageOptions = options.Images;
        ImageCache = new Sessions.ImageEmbeddingCache(options.ImageCacheBytes);
        Prompts = new PromptBuilder(Preset.Template, languageModel, () => !Preset.StopsAtSeparator ? []
            : languageModel is Models.LlamaLanguageModel lm ? SeparatorStops.For(lm.Tokenizer)
            : [languageModel.Tokenize(AnswerPostProcessor.Separator, addBos: false)]);
    }

    /// <summary>The model variant.</summary>
    public ModelVariant Variant { get; }

    /// <summary>The vision encoder (null in a text-only pipeline).</summary>
    public IVisionEncoder? VisionEncoder { get; }

    /// <summary>The projector (null in a text-only pipeline).</summary>
    public IProjector? Projector { get; }

    /// <summary>The language model and tokenizer.</summary>
    public ILanguageModel LanguageModel { get; }

    /// <summary>The variant's name as a manifest spells it (<c>minigpt4-vicuna0</c>, <c>minigpt4-llama2</c>, <c>minigptv2</c>).</summary>
    public string ModelName => Preset.Name;

    /// <summary>The variant's generation defaults (its demo's settings), used when a call passes no options.</summary>
    public GenerationOptions DefaultGenerationOptions => Preset.Defaults;

    /// <summary>The variant's template, stop rule and defaults.</summary>
    internal ModelPreset Preset { get; }

    /// <summary>Renders and tokenizes each turn's prompt.</summary>
    internal PromptBuilder Prompts { get; }

    /// <summary>The decoding engine over the language model.</summary>
    internal Generation.GenerationEngine Engine { get; }

    /// <summary>Admission of this pipeline's requests (slots, queue, memory budget).</summary>
    internal Generation.RequestAdmission Admission { get; }

    /// <summary>Requests waiting for admission now.</summary>
    public int QueuedRequests => Admission.QueueDepth;

    /// <summary>Requests running now.</summary>
    public int ActiveRequests => Admission.ActiveRequests;

    internal bool IsDisposed => Volatile.Read(ref _disposed) != 0;

    /// <summary>
    /// What decoding, preprocessing and encoding one image may hold at once: its encoded bytes, the decoded
    /// pixels its header declares (the pixel budget when it declares none), the float32 pixel tensor and a
    /// margin for the encoder's activations.
    /// </summary>
    private long EstimateImageBytes(Imaging.ImageInspection image)
    {
        var size = VisionEncoder?.ImageSize ?? 0;
        return image.ByteSize + image.DecodedBytes(_imageOptions) + 3L * size * size * 4 * 8 + (16L << 20);
    }

    /// <summary>KV cache bytes one answer may reserve: (prompt + new tokens) positions per beam.</summary>
    internal long EstimateAnswerBytes(int promptPositions, GenerationOptions options)
        => LanguageModel.CacheBytesPerPosition * (promptPositions + options.MaxNewTokens) * options.NumBeams;

    /// <summary>
    /// Loads a model from a manifest (<c>minigpt4.json</c>, or a folder holding one, or a plain Hugging Face
    /// LLaMA folder for text only). Everything is validated before the large parts are allocated.
    /// </summary>
    /// <exception cref="MiniGptConfigurationException">The manifest is invalid.</exception>
    /// <exception cref="MiniGptWeightsException">A weight file is missing, corrupt or does not fit; the message names the file and key.</exception>
    /// <exception cref="MiniGptNativeRuntimeException">libtorch cannot be loaded.</exception>
    public static Task<MiniGptPipeline> LoadAsync(string manifestPath, MiniGptLoadOptions? options = null,
        IProgress<MiniGptProgress>? progress = null, CancellationToken cancellationToken = default)
        => LoadAsync(ModelManifest.Load(manifestPath), options, progress, cancellationToken);

    /// <summary>Loads a model described by <paramref name="manifest"/>.</summary>
    public static Task<MiniGptPipeline> LoadAsync(ModelManifest manifest, MiniGptLoadOptions? options = null,
        IProgress<MiniGptProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(manifest);
        options ??= new MiniGptLoadOptions();
        return Task.Run(() =>
        {
            var parts = Models.ModelLoader.Load(manifest, options, progress, cancellationToken);
            return new MiniGptPipeline(parts.Variant, parts.Vision, parts.Projector, parts.LanguageModel, ownsComponents: true, options);
        }, cancellationToken);
    }

    /// <summary>Asks one question about one image.</summary>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is returned.</exception>
    /// <exception cref="MiniGptQueueFullException">Too many requests are waiting.</exception>
    /// <exception cref="MiniGptContextLengthException">The prompt plus MaxNewTokens does not fit the context.</exception>
    public async Task<MiniGptResponse> AskAsync(ImageInput image, string question, GenerationOptions? options = null, CancellationToken cancellationToken = default)
    {
        using var session = CreateSession();
        await session.AddImageAsync(image, cancellationToken).ConfigureAwait(false);
        return await session.AskAsync(question, options, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Asks one question about one image and streams the answer text.</summary>
    public async IAsyncEnumerable<string> StreamAsync(ImageInput image, string question, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var session = CreateSession();
        await session.AddImageAsync(image, cancellationToken).ConfigureAwait(false);
        await foreach (var delta in session.StreamAsync(question, options, cancellationToken).ConfigureAwait(false))
            yield return delta;
    }

    /// <summary>
    /// Asks one question about one image and streams the answer with its accounting, as
    /// <see cref="ChatSession.StreamUpdatesAsync"/> does: the texts concatenate to the answer, the last update carries
    /// the finish reason, usage (image tokens included) and timings.
    /// </summary>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is returned.</exception>
    /// <exception cref="MiniGptQueueFullException">Too many requests are waiting.</exception>
    /// <exception cref="MiniGptContextLengthException">The prompt plus MaxNewTokens does not fit the context.</exception>
    public async IAsyncEnumerable<GenerationUpdate> StreamUpdatesAsync(ImageInput image, string question, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        using var session = CreateSession();
        await session.AddImageAsync(image, cancellationToken).ConfigureAwait(false);
        await foreach (var update in session.StreamUpdatesAsync(question, options, cancellationToken).ConfigureAwait(false))
            yield return update;
    }

    /// <summary>
    /// Generates from a prompt you build yourself (token ids from <see cref="ILanguageModel.Tokenize"/> and image
    /// embeddings), without the variant's template: the engine's decoding, admission and cancellation, no conversation.
    /// The last update carries the finish reason, usage and timings.
    /// </summary>
    /// <exception cref="OperationCanceledException">Cancelled, within one decoding step.</exception>
    /// <exception cref="MiniGptQueueFullException">Too many requests are waiting.</exception>
    /// <exception cref="MiniGptContextLengthException">The prompt plus MaxNewTokens does not fit the context.</exception>
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(PromptSequence prompt, GenerationOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentNullException.ThrowIfNull(prompt);
        options ??= Preset.Defaults;
        options.Validate();
        using var lease = await Admission.AdmitAsync(EstimateAnswerBytes(prompt.Length - prompt.SkipLeft, options), "This generation", cancellationToken).ConfigureAwait(false);
        await foreach (var update in Engine.GenerateAsync(prompt, options, null, cancellationToken).ConfigureAwait(false))
            yield return update;
    }

    /// <summary>Starts a conversation. Dispose it when done.</summary>
    public ChatSession CreateSession()
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        return new ChatSession(this);
    }

    /// <summary>
    /// Starts a conversation from a system prompt and earlier turns (user turns with their images, assistant turns),
    /// rendered with the variant's template exactly as the same turns asked in one <see cref="ChatSession"/>; the images
    /// are encoded now. Continue it with <see cref="ChatSession.AskAsync"/> or <see cref="ChatSession.StreamUpdatesAsync"/>.
    /// </summary>
    /// <param name="systemPrompt">Replaces the template's system text (null keeps it). Every variant's template starts with one.</param>
    /// <param name="history">Earlier turns, oldest first (may be empty).</param>
    /// <param name="cancellationToken">Cancels image encoding.</param>
    /// <exception cref="MiniGptImageException">An image cannot be decoded or is refused.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is kept.</exception>
    public async Task<ChatSession> CreateSessionAsync(string? systemPrompt, IEnumerable<ChatTurn> history, CancellationToken cancellationToken = default)
    {
        var session = CreateSession();
        try
        {
            await session.ReplaceHistoryAsync(systemPrompt, history, cancellationToken).ConfigureAwait(false);
            return session;
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Restores a conversation saved with <see cref="ChatSession.SaveAsync"/> by this model (in this process or another):
    /// its system prompt, turns, image embeddings and key/value cache, so the next answer is the one the saved session
    /// would have given and prefills only the new tokens. The stream is read from its position to the end of the saved data.
    /// </summary>
    /// <exception cref="MiniGptModelMismatchException">The conversation was saved by another model.</exception>
    /// <exception cref="MiniGptSessionException">The data is not a saved conversation, or is truncated or corrupt.</exception>
    /// <exception cref="OperationCanceledException">Cancelled; nothing is kept.</exception>
    public Task<ChatSession> RestoreSessionAsync(Stream source, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        ArgumentNullException.ThrowIfNull(source);
        if (!source.CanRead) throw new ArgumentException("The stream is not readable.", nameof(source));
        return ChatSession.RestoreAsync(this, source, cancellationToken);
    }

    /// <summary>The model identity saved conversations are bound to (computed on first use).</summary>
    internal Sessions.ModelIdentity Identity
    {
        get
        {
            ObjectDisposedException.ThrowIf(IsDisposed, this);
            return LazyInitializer.EnsureInitialized(ref _identity, ref _identityLock, () => Sessions.ModelIdentity.Of(this))!;
        }
    }

    private Sessions.ModelIdentity? _identity;
    private object? _identityLock;

    /// <summary>
    /// The size in pixels of <paramref name="image"/> as this pipeline gives it to the model (turned by its EXIF
    /// orientation when <see cref="ImageDecodingOptions.ApplyExifOrientation"/> is set): the size that MiniGPT-v2's
    /// grounding boxes are mapped to (<see cref="MiniGptResponse.GetGroundingBoxes"/>). Read from the header when that
    /// says it, otherwise from the decoded image; a stream input is read by this call.
    /// </summary>
    /// <exception cref="ArgumentNullException"><paramref name="image"/> is null.</exception>
    /// <exception cref="MiniGptImageException">The image is refused by the pipeline's limits or cannot be decoded.</exception>
    public (int Width, int Height) GetImageSize(ImageInput image)
    {
        ArgumentNullException.ThrowIfNull(image);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        var inspection = image.Inspect(_imageOptions);
        if (inspection.SizeKnown && (!_imageOptions.ApplyExifOrientation || image.Kind == ImageInput.InputKind.Rgb))
            return ((int)inspection.Width, (int)inspection.Height);
        var decoded = Imaging.ImagePreprocessor.Decode(image, _imageOptions);
        return (decoded.Width, decoded.Height);
    }

    /// <summary>Recently encoded images by content (<see cref="MiniGptLoadOptions.ImageCacheBytes"/>).</summary>
    internal Sessions.ImageEmbeddingCache ImageCache { get; }

    /// <summary>
    /// Decodes, preprocesses, encodes and projects one image inside the pipeline's admission, unless an image with the
    /// same content (<paramref name="key"/>, from <see cref="Sessions.ImageContentKey"/>) was encoded recently.
    /// </summary>
    internal async Task<ImageEmbeddings> EncodeImageAsync(ImageInput image, byte[]? key, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(image);
        ObjectDisposedException.ThrowIf(IsDisposed, this);
        if (VisionEncoder is null || Projector is null)
            throw new InvalidOperationException("This pipeline has no vision encoder (it was loaded for text only).");
        if (ImageCache.TryGet(key) is { } cached) return cached;
        var embeddings = await EncodeAsync(VisionEncoder, Projector, image, ct).ConfigureAwait(false);
        ImageCache.Add(key, embeddings);
        return embeddings;
    }

    private async Task<ImageEmbeddings> EncodeAsync(IVisionEncoder encoder, IProjector projector, ImageInput image, CancellationToken ct)
    {
        // The limits (bytes, declared pixels, dimensions) are checked here, before the request queues.
        var inspection = image.Inspect(_imageOptions);
        using var lease = await Admission.AdmitAsync(EstimateImageBytes(inspection), "Encoding an image", ct).ConfigureAwait(false);
        return await Task.Run(() =>
        {
            using var features = encoder.Encode(image, ct);
            ct.ThrowIfCancellationRequested();
            return projector.Project(features);
        }, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// Frees the components (when owned). Safe while requests run: it waits for the native call in flight,
    /// and the requests end with <see cref="ObjectDisposedException"/>; a second call does nothing.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
        Admission.Close();
        if (!_ownsComponents) return;
        VisionEncoder?.Dispose();
        Projector?.Dispose();
        LanguageModel.Dispose();
    }
}
