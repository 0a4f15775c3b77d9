using LLama;
using LLama.Common;
using LLama.Native;
using MiniGpt4.Language;
using static TorchSharp.torch;

namespace MiniGpt4.Benchmarks.Peers;

/// <summary>The engines compared in docs/benchmarks.md.</summary>
public enum PeerEngine
{
    /// <summary>This library (TorchSharp / libtorch).</summary>
    MiniGpt4,
    /// <summary>llama.cpp through LLamaSharp 0.30.0 (LLamaSharp.Backend.Cpu).</summary>
    LlamaCpp,
}

/// <summary>Weight (and activation) precision, the same on both sides.</summary>
public enum PeerDType
{
    /// <summary>float32 weights.</summary>
    F32,
    /// <summary>bfloat16 weights.</summary>
    BF16,
}

/// <summary>
/// The least both engines share: one sequence with a KV cache; append tokens (a prefill when there
/// are several, a decode step when there is one), read the last position's logits, cut the cache back.
/// </summary>
internal interface IPeerSession : IDisposable
{
    /// <summary>Cached positions.</summary>
    int Length { get; }

    /// <summary>Runs <paramref name="ids"/> on top of the cache; logits are computed for the last position only.</summary>
    void Append(ReadOnlySpan<int> ids);

    /// <summary>The last appended position's logits (a copy).</summary>
    float[] LastLogits();

    /// <summary>Keeps the first <paramref name="length"/> positions.</summary>
    void Truncate(int length);
}

/// <summary>Greedy decoding over an <see cref="IPeerSession"/>.</summary>
internal static class PeerGreedy
{
    /// <summary>Index of the largest value (the first on ties, like torch.argmax and llama.cpp's greedy sampler).</summary>
    public static int ArgMax(ReadOnlySpan<float> v)
    {
        var best = 0;
        for (var i = 1; i < v.Length; i++) if (v[i] > v[best]) best = i;
        return best;
    }

    /// <summary>Prefills <paramref name="prompt"/> and generates <paramref name="count"/> tokens greedily; returns them and the first logits.</summary>
    public static (int[] Tokens, float[] FirstLogits) Run(IPeerSession s, ReadOnlySpan<int> prompt, int count)
    {
        s.Append(prompt);
        var first = s.LastLogits();
        var tokens = new int[count];
        var logits = first;
        for (var i = 0; i < count; i++)
        {
            tokens[i] = ArgMax(logits);
            if (i + 1 < count)
            {
                s.Append([tokens[i]]);
                logits = s.LastLogits();
            }
        }
        return (tokens, first);
    }

    /// <summary>Empties the cache, prefills <paramref name="prompt"/> and returns its last logits.</summary>
    public static float[] Truncate0AndLogits(this IPeerSession s, ReadOnlySpan<int> prompt)
    {
        s.Truncate(0);
        s.Append(prompt);
        return s.LastLogits();
    }
}

/// <summary>This library's <see cref="LlamaForCausalLM"/> and <see cref="LlamaSession"/>.</summary>
internal sealed class MiniGptPeerSession : IPeerSession
{
    private readonly LlamaForCausalLM _lm;
    private readonly LlamaSession _session;
    private Tensor? _logits;

    /// <summary>Loads the HF folder in <paramref name="dtype"/> on the CPU with <paramref name="threads"/> libtorch threads.</summary>
    public MiniGptPeerSession(string hfFolder, PeerDType dtype, int threads, int capacity)
        : this(hfFolder, dtype == PeerDType.F32 ? ScalarType.Float32 : ScalarType.BFloat16, threads, capacity)
    {
    }

    /// <summary>Same with any dtype the library takes (float64 serves as the exact reference).</summary>
    public MiniGptPeerSession(string hfFolder, ScalarType dtype, int threads, int capacity)
    {
        set_num_threads(threads);
        _lm = LlamaForCausalLM.Load(hfFolder, dtype, CPU);
        _session = _lm.CreateSession(capacity);
    }

    /// <inheritdoc />
    public int Length => _session.Length;

    /// <inheritdoc />
    public void Append(ReadOnlySpan<int> ids)
    {
        _logits?.Dispose();
        _logits = ids.Length == 1 ? _session.Step(ids) : _session.PrefillTokens(ids);
    }

    /// <inheritdoc />
    public float[] LastLogits() => _logits!.data<float>().ToArray();

    /// <inheritdoc />
    public void Truncate(int length) => _session.Truncate(length);

    /// <inheritdoc />
    public void Dispose()
    {
        _logits?.Dispose();
        _session.Dispose();
        _lm.Dispose();
    }
}

/// <summary>llama.cpp (LLamaSharp): one context, sequence 0, explicit positions.</summary>
internal sealed class LlamaCppPeerSession : IPeerSession
{
    private static int _configured;
    private static readonly bool Verbose = Environment.GetEnvironmentVariable("MINIGPT4_PEERS_VERBOSE") == "1";
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private readonly LLamaBatch _batch = new();
    private int _lastIndex;

    /// <summary>Loads <paramref name="gguf"/> (memory-mapped) with a context of <paramref name="capacity"/> positions and <paramref name="threads"/> threads.</summary>
    public LlamaCppPeerSession(string gguf, PeerDType dtype, int threads, int capacity)
    {
        if (Interlocked.Exchange(ref _configured, 1) == 0)
            NativeLibraryConfig.All.WithLogCallback((level, message) =>
            {
                if (Verbose || level is LLamaLogLevel.Error or LLamaLogLevel.Warning || IsWorthPrinting(message))
                    Console.Error.Write("// llama.cpp: " + message);
            });
        var p = new ModelParams(gguf)
        {
            ContextSize = (uint)capacity,
            BatchSize = 512,
            UBatchSize = 512,
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
            // llama.cpp default (auto = on for CPU); MINIGPT4_PEERS_FA=0 turns it off to see its share of the numeric difference.
            FlashAttention = Environment.GetEnvironmentVariable("MINIGPT4_PEERS_FA") == "0" ? false : null,
            // The KV cache in the weights' precision, as ours (llama.cpp's default is F16).
            TypeK = dtype == PeerDType.F32 ? GGMLType.GGML_TYPE_F32 : (GGMLType)30,
            TypeV = dtype == PeerDType.F32 ? GGMLType.GGML_TYPE_F32 : (GGMLType)30,
        };
        _weights = LLamaWeights.LoadFromFile(p);
        _context = _weights.CreateContext(p);
    }

    /// <summary>The few info lines the report quotes: which native build loaded, the file type, flash attention.</summary>
    private static bool IsWorthPrinting(string message) =>
        (message.StartsWith("Successfully loaded", StringComparison.Ordinal) && message.Contains("libllama", StringComparison.Ordinal))
        || message.Contains("file type", StringComparison.Ordinal)
        || message.Contains("flash_attn", StringComparison.Ordinal);

    /// <inheritdoc />
    public int Length { get; private set; }

    /// <inheritdoc />
    public void Append(ReadOnlySpan<int> ids)
    {
        _batch.Clear();
        for (var i = 0; i < ids.Length; i++)
            _batch.Add(ids[i], Length + i, LLamaSeqId.Zero, i == ids.Length - 1);
        var r = _context.NativeHandle.Decode(_batch);
        if (r != DecodeResult.Ok) throw new InvalidOperationException($"llama_decode returned {r}");
        _context.NativeHandle.Synchronize();
        _lastIndex = ids.Length - 1;
        Length += ids.Length;
    }

    /// <inheritdoc />
    public float[] LastLogits() => _context.NativeHandle.GetLogitsIth(_lastIndex).ToArray();

    /// <inheritdoc />
    public void Truncate(int length)
    {
        _context.NativeHandle.MemorySequenceRemove(LLamaSeqId.Zero, length, -1);
        Length = length;
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _context.Dispose();
        _weights.Dispose();
    }
}
