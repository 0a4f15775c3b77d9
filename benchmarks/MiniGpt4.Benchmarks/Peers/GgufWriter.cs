using System.Text;
using MiniGpt4.Language;
using MiniGpt4.Text;
using MiniGpt4.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Benchmarks.Peers;

/// <summary>Tensor element types of GGML that this writer emits (values of <c>enum ggml_type</c>).</summary>
internal enum GgmlType : uint
{
    /// <summary>float32.</summary>
    F32 = 0,
    /// <summary>IEEE float16.</summary>
    F16 = 1,
    /// <summary>bfloat16.</summary>
    BF16 = 30,
}

/// <summary>
/// A minimal GGUF version 3 writer, enough for llama.cpp to load a plain LLaMA: little-endian header
/// (<c>"GGUF"</c>, version, tensor count, metadata count), typed metadata key/values, tensor infos
/// (name, dimensions in GGML order = innermost first, type, offset into the data section) and the
/// data section, every tensor aligned to <see cref="Alignment"/> bytes.
/// </summary>
internal sealed class GgufWriter
{
    /// <summary>
    /// <c>general.alignment</c>: 64 bytes, a cache line. With GGUF's default of 32, every other 64-byte load of
    /// llama.cpp's kernels straddles two cache lines, which made it 1.5-2.5 times slower in the peer table.
    /// </summary>
    public const int Alignment = 64;

    private enum ValueType : uint
    {
        UInt32 = 4, Int32 = 5, Float32 = 6, String = 8, Array = 9,
    }

    private sealed record Entry(string Name, GgmlType Type, long[] Shape, Func<Tensor> Get);

    private readonly List<(string Key, Action<BinaryWriter> Write)> _metadata = [];
    private readonly List<Entry> _tensors = [];

    /// <summary>Adds a string metadata value.</summary>
    public void Add(string key, string value) => _metadata.Add((key, w => { w.Write((uint)ValueType.String); WriteString(w, value); }));

    /// <summary>Adds a uint32 metadata value.</summary>
    public void Add(string key, uint value) => _metadata.Add((key, w => { w.Write((uint)ValueType.UInt32); w.Write(value); }));

    /// <summary>Adds a float32 metadata value.</summary>
    public void Add(string key, float value) => _metadata.Add((key, w => { w.Write((uint)ValueType.Float32); w.Write(value); }));

    /// <summary>Adds an array of strings.</summary>
    public void Add(string key, IReadOnlyList<string> values) => _metadata.Add((key, w =>
    {
        w.Write((uint)ValueType.Array); w.Write((uint)ValueType.String); w.Write((ulong)values.Count);
        foreach (var v in values) WriteString(w, v);
    }));

    /// <summary>Adds an array of float32.</summary>
    public void Add(string key, IReadOnlyList<float> values) => _metadata.Add((key, w =>
    {
        w.Write((uint)ValueType.Array); w.Write((uint)ValueType.Float32); w.Write((ulong)values.Count);
        foreach (var v in values) w.Write(v);
    }));

    /// <summary>Adds an array of int32.</summary>
    public void Add(string key, IReadOnlyList<int> values) => _metadata.Add((key, w =>
    {
        w.Write((uint)ValueType.Array); w.Write((uint)ValueType.Int32); w.Write((ulong)values.Count);
        foreach (var v in values) w.Write(v);
    }));

    /// <summary>
    /// Adds a tensor; <paramref name="shape"/> is in PyTorch order (outermost first), <paramref name="get"/>
    /// returns it (any dtype; cast to <paramref name="type"/> and disposed by the writer).
    /// </summary>
    public void AddTensor(string name, GgmlType type, long[] shape, Func<Tensor> get) => _tensors.Add(new Entry(name, type, shape, get));

    /// <summary>Writes the file (via a temporary name, renamed when complete).</summary>
    public void Write(string path)
    {
        var tmp = path + ".tmp";
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        using (var w = new BinaryWriter(fs, Encoding.UTF8, leaveOpen: true))
        {
            w.Write("GGUF"u8);
            w.Write(3u);
            w.Write((ulong)_tensors.Count);
            w.Write((ulong)(_metadata.Count + 1));
            WriteString(w, "general.alignment");
            w.Write((uint)ValueType.UInt32);
            w.Write((uint)Alignment);
            foreach (var (key, write) in _metadata)
            {
                WriteString(w, key);
                write(w);
            }
            ulong offset = 0;
            foreach (var t in _tensors)
            {
                WriteString(w, t.Name);
                w.Write((uint)t.Shape.Length);
                for (var i = t.Shape.Length - 1; i >= 0; i--) w.Write((ulong)t.Shape[i]); // GGML order: ne[0] is the innermost dimension
                w.Write((uint)t.Type);
                w.Write(offset);
                offset = Align(offset + (ulong)Bytes(t));
            }
            w.Flush();
            Pad(fs);
            foreach (var t in _tensors)
            {
                using var scope = NewDisposeScope();
                var data = t.Get().to(ToTorch(t.Type)).contiguous();
                if (!data.shape.SequenceEqual(t.Shape)) throw new InvalidOperationException($"tensor {t.Name}: shape changed");
                SafetensorsWriter.WriteData(fs, data);
                Pad(fs);
            }
        }
        File.Move(tmp, path, overwrite: true);
    }

    private static long Bytes(Entry t) => DTypes.NumElements(t.Shape) * (t.Type == GgmlType.F32 ? 4 : 2);

    private static ulong Align(ulong n) => (n + Alignment - 1) / Alignment * Alignment;

    private static void Pad(Stream s)
    {
        var pad = (int)(Align((ulong)s.Position) - (ulong)s.Position);
        if (pad > 0) s.Write(new byte[pad]);
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        var bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static ScalarType ToTorch(GgmlType t) => t switch
    {
        GgmlType.F32 => ScalarType.Float32,
        GgmlType.F16 => ScalarType.Float16,
        GgmlType.BF16 => ScalarType.BFloat16,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    /// <summary>
    /// Converts a Hugging Face LLaMA folder (<c>config.json</c> + weights) and a SentencePiece
    /// <c>tokenizer.model</c> to a llama.cpp GGUF file: llama.cpp's tensor names, matrices as
    /// <paramref name="type"/>, norms as F32 (as llama.cpp's own converter does), and the q/k rows
    /// permuted from HF's rotate-half RoPE layout back to the interleaved layout llama.cpp's LLaMA
    /// graph expects (the inverse of the permutation HF's conversion script applied).
    /// </summary>
    public static void ConvertHfLlama(string hfFolder, string tokenizerModel, string ggufPath, GgmlType type)
    {
        var config = LlamaConfig.FromFile(hfFolder);
        var sp = SentencePieceModel.Load(tokenizerModel);
        // Vicuna v0 has one embedding row more than its tokenizer's pieces (the added pad token): such rows get
        // control tokens of their own, as llama.cpp's converter writes added tokens.
        if (sp.Pieces.Count > config.VocabSize)
            throw new InvalidOperationException($"tokenizer has {sp.Pieces.Count} pieces, the model only {config.VocabSize} rows");
        var added = Enumerable.Range(sp.Pieces.Count, config.VocabSize - sp.Pieces.Count).ToArray();
        using var source = WeightFiles.Open(hfFolder);
        var g = new GgufWriter();
        g.Add("general.architecture", "llama");
        g.Add("general.name", Path.GetFileName(Path.GetFullPath(hfFolder).TrimEnd('/')));
        g.Add("general.file_type", type switch { GgmlType.F32 => 0u, GgmlType.F16 => 1u, _ => 32u }); // LLAMA_FTYPE_ALL_F32 / MOSTLY_F16 / MOSTLY_BF16
        g.Add("llama.context_length", (uint)config.MaxPositionEmbeddings);
        g.Add("llama.embedding_length", (uint)config.HiddenSize);
        g.Add("llama.block_count", (uint)config.NumHiddenLayers);
        g.Add("llama.feed_forward_length", (uint)config.IntermediateSize);
        g.Add("llama.attention.head_count", (uint)config.NumAttentionHeads);
        g.Add("llama.attention.head_count_kv", (uint)config.NumKeyValueHeads);
        g.Add("llama.rope.dimension_count", (uint)config.HeadDim);
        g.Add("llama.attention.layer_norm_rms_epsilon", (float)config.RmsNormEps);
        g.Add("llama.rope.freq_base", (float)config.RopeTheta);
        g.Add("llama.vocab_size", (uint)config.VocabSize);
        g.Add("tokenizer.ggml.model", "llama");
        g.Add("tokenizer.ggml.tokens", sp.Pieces.Select(p => p.Piece).Concat(added.Select(i => $"<added_{i}>")).ToArray());
        g.Add("tokenizer.ggml.scores", sp.Pieces.Select(p => p.Score).Concat(added.Select(_ => 0f)).ToArray());
        // SentencePiece's types are llama.cpp's token types (3 = control).
        g.Add("tokenizer.ggml.token_type", sp.Pieces.Select(p => (int)p.Type).Concat(added.Select(_ => 3)).ToArray());
        g.Add("tokenizer.ggml.bos_token_id", (uint)(config.BosTokenId ?? 1));
        g.Add("tokenizer.ggml.eos_token_id", (uint)(config.EosTokenId ?? 2));
        g.Add("tokenizer.ggml.unknown_token_id", 0u);

        void Matrix(string gguf, string hf, Func<Tensor, Tensor>? transform = null)
        {
            source.TryGetInfo(hf, out var info);
            if (info is null) throw new InvalidOperationException($"{hf} missing");
            g.AddTensor(gguf, type, info.Shape, () =>
            {
                var t = source.Load(hf, ScalarType.Float32);
                return transform is null ? t : transform(t);
            });
        }
        void Norm(string gguf, string hf)
        {
            source.TryGetInfo(hf, out var info);
            g.AddTensor(gguf, GgmlType.F32, info!.Shape, () => source.Load(hf, ScalarType.Float32));
        }

        Matrix("token_embd.weight", "model.embed_tokens.weight");
        for (var i = 0; i < config.NumHiddenLayers; i++)
        {
            var p = $"model.layers.{i}.";
            var b = $"blk.{i}.";
            Norm(b + "attn_norm.weight", p + "input_layernorm.weight");
            Matrix(b + "attn_q.weight", p + "self_attn.q_proj.weight", t => ToInterleaved(t, config.NumAttentionHeads));
            Matrix(b + "attn_k.weight", p + "self_attn.k_proj.weight", t => ToInterleaved(t, config.NumKeyValueHeads));
            Matrix(b + "attn_v.weight", p + "self_attn.v_proj.weight");
            Matrix(b + "attn_output.weight", p + "self_attn.o_proj.weight");
            Norm(b + "ffn_norm.weight", p + "post_attention_layernorm.weight");
            Matrix(b + "ffn_gate.weight", p + "mlp.gate_proj.weight");
            Matrix(b + "ffn_up.weight", p + "mlp.up_proj.weight");
            Matrix(b + "ffn_down.weight", p + "mlp.down_proj.weight");
        }
        Norm("output_norm.weight", "model.norm.weight");
        Matrix("output.weight", config.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight");
        g.Write(ggufPath);
    }

    /// <summary>
    /// HF stores each head's q/k rows as [first halves of the rotary pairs; second halves]
    /// (rotate-half); llama.cpp's LLaMA (Meta layout) wants the pairs adjacent. Row 2i+j of a head
    /// takes HF row j·d/2 + i.
    /// </summary>
    internal static Tensor ToInterleaved(Tensor w, int heads)
    {
        var rows = w.shape[0];
        var half = rows / heads / 2;
        return w.reshape(heads, 2, half, w.shape[1]).transpose(1, 2).reshape(rows, w.shape[1]);
    }
}
