using System.Text.Json.Serialization;

namespace MiniGpt4;

/// <summary>
/// How an answer is generated. Defaults mirror the MiniGPT-4 demo (<c>Chat.answer</c>): sampling on,
/// top-p 0.9, top-k 50 (Hugging Face's implicit default, which the reference applies), temperature 1.0,
/// repetition penalty 1.05, 300 new tokens, one beam.
/// </summary>
public sealed record GenerationOptions
{
    /// <summary>Sample (true) or pick the most likely token (false). A <see cref="Temperature"/> of 0 also means greedy.</summary>
    public bool DoSample { get; init; } = true;

    /// <summary>Softmax temperature; 0 means greedy decoding.</summary>
    public float Temperature { get; init; } = 1.0f;

    /// <summary>Nucleus sampling: keep the smallest set of tokens whose probability mass reaches this value.</summary>
    public float TopP { get; init; } = 0.9f;

    /// <summary>Keep only the this many most likely tokens when sampling (0 disables).</summary>
    public int TopK { get; init; } = 50;

    /// <summary>Hugging Face repetition penalty (1 disables). The penalised set is BOS plus the generated tokens.</summary>
    public float RepetitionPenalty { get; init; } = 1.05f;

    /// <summary>Maximum number of new tokens.</summary>
    public int MaxNewTokens { get; init; } = 300;

    /// <summary>Minimum number of new tokens before EOS is allowed.</summary>
    public int MinNewTokens { get; init; }

    /// <summary>Beam search width (1 = no beam search).</summary>
    public int NumBeams { get; init; } = 1;

    /// <summary>Beam search length penalty (score = sum log-probs / length^penalty).</summary>
    public float LengthPenalty { get; init; } = 1.0f;

    /// <summary>Random seed for reproducible sampling; null picks a fresh seed per call.</summary>
    public long? Seed { get; init; }

    /// <summary>Stop when the decoded text contains one of these; the stop string is not part of the answer.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = Array.Empty<string>();

    /// <summary>Extra stop token ids (each a one-token stop).</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = Array.Empty<int>();

    /// <summary>
    /// Stop when the generated ids end with one of these sequences (the stop ids are part of the result, as in the
    /// reference). The pipeline adds the variant's template stops here when <see cref="UseTemplateStops"/> is on.
    /// </summary>
    public IReadOnlyList<IReadOnlyList<int>> StopTokenSequences { get; init; } = Array.Empty<IReadOnlyList<int>>();

    /// <summary>Use the variant's template stops (the token spellings of <c>###</c> for MiniGPT-4). EOS always stops.</summary>
    public bool UseTemplateStops { get; init; } = true;

    /// <summary>
    /// The reference's <c>max_length</c> (2000): the most positions (prompt plus <see cref="MaxNewTokens"/>) one
    /// answer may use; the model's own context length bounds it too. What happens to a longer prompt is
    /// <see cref="TruncatePromptFromLeft"/>'s choice.
    /// </summary>
    public int MaxContextLength { get; init; } = 2000;

    /// <summary>
    /// When the prompt plus <see cref="MaxNewTokens"/> exceeds <see cref="MaxContextLength"/>: false (the default)
    /// refuses the request with <see cref="MiniGptContextLengthException"/>; true cuts the prompt's embeddings
    /// from the left as the reference's <c>Chat.answer_prepare</c> does (which can cut an image or the
    /// system prompt; the cut positions are reported in <see cref="MiniGptUsage.TruncatedPromptTokens"/>).
    /// </summary>
    public bool TruncatePromptFromLeft { get; init; }

    /// <summary>Greedy decoding with the reference's greedy settings (repetition penalty 1.0).</summary>
    public static GenerationOptions Greedy { get; } = new() { DoSample = false, RepetitionPenalty = 1.0f };

    /// <summary>True when this request decodes greedily.</summary>
    public bool IsGreedy => !DoSample || Temperature == 0f;

    internal void Validate()
    {
        static void Check(bool ok, string message)
        {
            if (!ok) throw new ArgumentOutOfRangeException(message.Split(' ')[0], message);
        }
        Check(Temperature >= 0 && float.IsFinite(Temperature), "Temperature must be finite and >= 0.");
        Check(TopP > 0 && TopP <= 1, "TopP must be in (0, 1].");
        Check(TopK >= 0, "TopK must be >= 0.");
        Check(RepetitionPenalty > 0 && float.IsFinite(RepetitionPenalty), "RepetitionPenalty must be finite and > 0.");
        Check(MaxNewTokens > 0, "MaxNewTokens must be > 0.");
        Check(MinNewTokens >= 0 && MinNewTokens <= MaxNewTokens, "MinNewTokens must be in [0, MaxNewTokens].");
        Check(NumBeams >= 1, "NumBeams must be >= 1.");
        Check(MaxContextLength > MaxNewTokens, "MaxContextLength must exceed MaxNewTokens.");
        if (StopStrings.Any(string.IsNullOrEmpty)) throw new ArgumentException("Stop strings must be non-empty.", nameof(StopStrings));
    }
}

/// <summary>Why generation ended. Serialised by System.Text.Json as <c>"stop"</c>, <c>"length"</c> (the words OpenAI-style APIs use).</summary>
[JsonConverter(typeof(JsonStringEnumConverter<MiniGptFinishReason>))]
public enum MiniGptFinishReason
{
    /// <summary>EOS, a stop token sequence or a stop string.</summary>
    [JsonStringEnumMemberName("stop")]
    Stop,
    /// <summary>The maximum number of new tokens was reached.</summary>
    [JsonStringEnumMemberName("length")]
    Length,
    /// <summary>
    /// Not produced any more: a cancelled request throws <see cref="OperationCanceledException"/> (kept so that
    /// code which names it still compiles).
    /// </summary>
    [JsonStringEnumMemberName("cancelled")]
    Cancelled,
}

/// <summary>Token accounting of one answer.</summary>
/// <param name="PromptTokens">Positions of the prompt fed to the language model (text tokens plus image embeddings), after truncation.</param>
/// <param name="GeneratedTokens">New tokens generated.</param>
/// <param name="TruncatedPromptTokens">Positions cut from the left of the prompt because it exceeded the context (the reference's behaviour).</param>
/// <param name="ReusedPromptTokens">Prompt positions whose keys/values came from the chat session's cache.</param>
/// <param name="PrefilledPromptTokens">Prompt positions computed for this answer.</param>
public sealed record MiniGptUsage(int PromptTokens, int GeneratedTokens, int TruncatedPromptTokens, int ReusedPromptTokens, int PrefilledPromptTokens)
{
    /// <summary>Of <see cref="PromptTokens"/>, the positions that hold image embeddings (each image takes the projector's tokens per image).</summary>
    public int ImagePromptTokens { get; init; }
}

/// <summary>Where the time went.</summary>
/// <param name="ImageEncodeMilliseconds">Decoding, preprocessing and encoding new images.</param>
/// <param name="PrefillMilliseconds">Computing the prompt's keys/values and the first logits.</param>
/// <param name="DecodeMilliseconds">Generating the new tokens after the first.</param>
/// <param name="DecodeTokensPerSecond">New tokens per second of decoding.</param>
public sealed record MiniGptTimings(double ImageEncodeMilliseconds, double PrefillMilliseconds, double DecodeMilliseconds, double DecodeTokensPerSecond);

/// <summary>A finished answer.</summary>
public sealed record MiniGptResponse
{
    /// <summary>The answer after the reference's clean-up (cut at <c>###</c>, after the last <c>Assistant:</c>, stripped).</summary>
    public required string Text { get; init; }
    /// <summary>The decoded new tokens before clean-up (special tokens skipped).</summary>
    public required string RawText { get; init; }
    /// <summary>The new token ids (a stop token sequence that ended generation is included, as the reference returns it).</summary>
    public required IReadOnlyList<int> TokenIds { get; init; }
    /// <summary>Why generation ended.</summary>
    public required MiniGptFinishReason FinishReason { get; init; }
    /// <summary>Token accounting.</summary>
    public required MiniGptUsage Usage { get; init; }
    /// <summary>Timings.</summary>
    public required MiniGptTimings Timings { get; init; }
    /// <summary>The whole rendered prompt, image placeholders included.</summary>
    public required string Prompt { get; init; }
    /// <summary>The token ids of each text segment of the prompt (split at the image placeholders).</summary>
    public required IReadOnlyList<IReadOnlyList<int>> SegmentIds { get; init; }
    /// <summary>Beam search: the returned hypothesis' score (sum of log-probs / length^penalty); null otherwise.</summary>
    public double? SequenceScore { get; init; }

    /// <summary>
    /// The boxes of a MiniGPT-v2 <c>[grounding]</c>, <c>[refer]</c> or <c>[detection]</c> answer (<see cref="Text"/>) with
    /// their phrases, in pixels of the image the question was about; empty when the answer has none. See
    /// <see cref="MiniGptGrounding.Parse"/> for the format and the scale.
    /// </summary>
    /// <param name="imageWidth">Width of the image as it was given to the model, in pixels.</param>
    /// <param name="imageHeight">Height of the image as it was given to the model, in pixels.</param>
    public IReadOnlyList<MiniGptGroundingBox> GetGroundingBoxes(int imageWidth, int imageHeight)
        => MiniGptGrounding.Parse(Text, imageWidth, imageHeight);
}

/// <summary>
/// Numeric precision of the model weights and activations. Serialised by System.Text.Json as <c>"float32"</c>,
/// <c>"bfloat16"</c>, <c>"float16"</c> (the names the console sample's <c>--dtype</c> takes).
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<MiniGptDType>))]
public enum MiniGptDType
{
    /// <summary>32-bit float: the reference's numbers (parity), 2x the memory of bf16.</summary>
    [JsonStringEnumMemberName("float32")]
    Float32,
    /// <summary>bfloat16: the CPU default (fast GEMM, half the bytes).</summary>
    [JsonStringEnumMemberName("bfloat16")]
    BFloat16,
    /// <summary>float16: for CUDA devices (slow on CPU).</summary>
    [JsonStringEnumMemberName("float16")]
    Float16,
}

/// <summary>
/// Weight-only quantization of the language model's linear layers (docs/quantization.md); JSON names <c>"none"</c>,
/// <c>"int8"</c>, <c>"int4"</c> (the names the console sample's <c>--quantize</c> and <c>convert --dtype</c> take).
/// </summary>
[JsonConverter(typeof(JsonStringEnumConverter<MiniGptQuantization>))]
public enum MiniGptQuantization
{
    /// <summary>As stored: float weights stay float, a quantized file (written by <c>convert</c>) stays in its format.</summary>
    [JsonStringEnumMemberName("none")]
    None,
    /// <summary>8-bit weights, one scale per 32 (8.5 bits per weight): about half the bytes of bfloat16 per token.</summary>
    [JsonStringEnumMemberName("int8")]
    Int8,
    /// <summary>4-bit weights, one scale per 32 (4.5 bits per weight), the output head in 8 bits.</summary>
    [JsonStringEnumMemberName("int4")]
    Int4,
}

/// <summary>How a model is loaded.</summary>
public sealed record MiniGptLoadOptions
{
    /// <summary>The device: <c>"cpu"</c> (default), <c>"cuda"</c> or <c>"cuda:N"</c>.</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>Weights and activations dtype; default bfloat16. Use <see cref="MiniGptDType.Float32"/> for exact parity.</summary>
    public MiniGptDType DType { get; init; } = MiniGptDType.BFloat16;

    /// <summary>
    /// Quantizes the language model's float weights while loading (<see cref="MiniGptQuantization.Int8"/>,
    /// <see cref="MiniGptQuantization.Int4"/>; needs <see cref="DType"/> bfloat16, the activations' dtype). Default
    /// <see cref="MiniGptQuantization.None"/>: weights as stored. A file already quantized in another format is refused
    /// with <see cref="MiniGptConfigurationException"/>; converting once (<c>convert --dtype int4</c>) loads faster
    /// and memory-maps the packed weights.
    /// </summary>
    public MiniGptQuantization Quantization { get; init; } = MiniGptQuantization.None;

    /// <summary>Intra-op CPU threads for libtorch (process-wide); null leaves libtorch's default.</summary>
    public int? Threads { get; init; }

    /// <summary>Image decoding limits and formats.</summary>
    public ImageDecodingOptions Images { get; init; } = new();

    /// <summary>
    /// On the CPU, weights whose dtype equals the file's are views of a private memory map of the file instead of
    /// copies (default true): loading costs a mapping rather than a copy into fresh memory (measured 16 times faster),
    /// the pages come from the page cache, and a weight changed in memory (a LoRA merge) is copied on write only.
    /// As with llama.cpp's memory mapping, do not truncate or rewrite a weight file in place while a model uses it
    /// (replace it by renaming instead): touching a mapped page past a file's new end kills the process. False copies
    /// every weight into process memory.
    /// </summary>
    public bool MemoryMapWeights { get; init; } = true;

    /// <summary>
    /// A bfloat16 CPU model over memory-mapped float16 files (the released weights) keeps the large float16 matrices
    /// (the language model's projections, the vision tower's linear layers) in the files instead of converting them
    /// (default true): the model is ready in about the time the files take to map rather than the seconds that writing
    /// every byte into new memory takes, and each product rounds the weights to bfloat16 exactly as the conversion
    /// would have, so every result is the same. The price: decoding reads and rounds float16 (measured from level with
    /// the converted model to 0.8 of its speed) and each prompt rounds the weights again (about 0.1 s per GB at two
    /// threads). False converts while loading. MiniGPT-v2's language model is always converted (its LoRA adapters are
    /// merged into the weights); its vision tower follows this option.
    /// </summary>
    public bool KeepFloat16Weights { get; init; } = true;

    /// <summary>
    /// Reads every memory page of the loaded CPU weights once at the end of the load (default true), so the first
    /// request does not pay for bringing them into the process: with memory-mapped weights that first touch costs a
    /// page-table entry per page (on some virtual machines as much as reading the bytes several times over), and it
    /// would otherwise fall on the first prefill. False makes the load return sooner and the first answer slower.
    /// </summary>
    public bool PrefaultWeights { get; init; } = true;

    /// <summary>
    /// Most positions (prompt plus new tokens) a session's KV cache holds; default and upper bound: the model's
    /// <c>max_position_embeddings</c>. A cache grows by need: each answer reserves its prompt plus
    /// <see cref="GenerationOptions.MaxNewTokens"/> positions, not the whole context.
    /// </summary>
    public int? ContextLength { get; init; }

    /// <summary>Requests (answers, image encodings) that run at once; more wait in the queue. Default 8.</summary>
    public int MaxConcurrentRequests { get; init; } = 8;

    /// <summary>
    /// Requests that may wait for a slot or for memory; one more is refused at once with
    /// <see cref="MiniGptQueueFullException"/> (a server's 429). Default 16.
    /// </summary>
    public int MaxQueuedRequests { get; init; } = 16;

    /// <summary>
    /// Bytes that running requests (KV cache for prompt plus new tokens, image buffers) and the caches idle
    /// conversations keep may hold together, beyond the weights. A request waits until its share is free
    /// (idle caches are evicted first, least recently used); one larger than the whole budget is refused with
    /// <see cref="MiniGptCapacityException"/>. Null (the default): a quarter of the memory available to the process.
    /// </summary>
    public long? MemoryBudgetBytes { get; init; }

    /// <summary>
    /// Bytes of recently encoded image embeddings the pipeline keeps, by image content (encoded bytes, or RGB pixels
    /// and size), so an image seen again in any session or request is not encoded twice; least recently used go first.
    /// Default 64 MiB (128 Vicuna images at 32 × 4096 float32 values); 0 turns the cache off.
    /// </summary>
    public long ImageCacheBytes { get; init; } = 64L << 20;

    /// <summary>The default <see cref="MemoryBudgetBytes"/>: a quarter of the memory available to the process.</summary>
    public static long DefaultMemoryBudgetBytes() => Math.Max(256L << 20, GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / 4);

    /// <summary>Checks every value once, before anything is loaded; throws <see cref="MiniGptConfigurationException"/>.</summary>
    internal MiniGptLoadOptions Validate()
    {
        var check = new ConfigCheck(nameof(MiniGptLoadOptions));
        check.Require(!string.IsNullOrWhiteSpace(Device), "Device must be cpu, cuda or cuda:N");
        check.Require(Enum.IsDefined(DType), $"DType {DType} is not a MiniGptDType");
        check.Require(Enum.IsDefined(Quantization), $"Quantization {Quantization} is not a MiniGptQuantization");
        check.Require(Quantization == MiniGptQuantization.None || DType == MiniGptDType.BFloat16,
            $"Quantization {Quantization} runs with bfloat16 activations (DType is {DType})");
        check.Require(Threads is null or > 0, $"Threads must be positive (got {Threads})");
        check.Require(ContextLength is null or > 0, $"ContextLength must be positive (got {ContextLength})");
        check.Require(MaxConcurrentRequests > 0, $"MaxConcurrentRequests must be positive (got {MaxConcurrentRequests})");
        check.Require(MaxQueuedRequests >= 0, $"MaxQueuedRequests must not be negative (got {MaxQueuedRequests})");
        check.Require(MemoryBudgetBytes is null or > 0, $"MemoryBudgetBytes must be positive (got {MemoryBudgetBytes})");
        check.Require(ImageCacheBytes >= 0, $"ImageCacheBytes must not be negative (got {ImageCacheBytes})");
        check.Require(Images is not null, "Images must not be null");
        return this;
    }
}

/// <summary>Progress of a long operation such as loading.</summary>
/// <param name="Stage">What is happening (e.g. "vision encoder", "language model").</param>
/// <param name="Fraction">Overall completion in [0, 1].</param>
/// <param name="File">The file being read, when any.</param>
public sealed record MiniGptProgress(string Stage, double Fraction, string? File = null);
