using System.Runtime.InteropServices;
using System.Text;
using MiniGpt4.Abstractions;
using MiniGpt4.Language;
using MiniGpt4.Models;
using MiniGpt4.Prompting;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Sessions;

/// <summary>One image of a saved conversation: its content key (SHA-256 of the input, when known) and embeddings.</summary>
internal sealed record SavedImage(byte[]? Key, int Tokens, int Hidden, float[] Values);

/// <summary>A conversation as read from a stream, before it becomes a <see cref="ChatSession"/>.</summary>
internal sealed record SavedSession(string? SystemPrompt, IReadOnlyList<ConversationMessage> Messages, IReadOnlyList<SavedImage> Images,
    long[]? CacheKeys, LlamaSession.Snapshot? Cache) : IDisposable
{
    public void Dispose() => Cache?.Dispose();
}

/// <summary>
/// The binary format of a saved <see cref="ChatSession"/> (little-endian; see docs/chat.md): magic <c>MGPT4SES</c>,
/// version, the model identity (description and digest), the system prompt, the messages, each image's content key
/// and float32 embeddings, then the key/value cache: the keys of its positions (token ids; image positions as image
/// index and offset) and each layer's keys and values as raw bytes in the model's dtype, and an end marker.
/// Everything read is bounded and checked against the pipeline before anything the size of it is allocated;
/// a problem is a <see cref="MiniGptSessionException"/>, another model a <see cref="MiniGptModelMismatchException"/>.
/// </summary>
internal static class SessionFile
{
    private static ReadOnlySpan<byte> Magic => "MGPT4SES"u8;
    private static ReadOnlySpan<byte> End => "END."u8;
    private const int Version = 1;
    private const int MaxStringBytes = 64 << 20;
    private const int MaxMessages = 1 << 20;
    private const long ImageKeyStride = 1_000_000L;

    /// <summary>Writes a conversation; <paramref name="cache"/> (from <see cref="Generation.ConversationCache.Export"/>) may be null.</summary>
    public static void Write(Stream stream, ModelIdentity identity, string? systemPrompt, IReadOnlyList<ConversationMessage> messages,
        IReadOnlyList<(ImageEmbeddings Embeddings, byte[]? Key)> images, (long[] Keys, IDisposable Snapshot)? cache, CancellationToken ct)
    {
        using var w = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true);
        w.Write(Magic);
        w.Write(Version);
        WriteString(w, identity.Description);
        WriteString(w, identity.Digest);
        w.Write(systemPrompt is not null);
        if (systemPrompt is not null) WriteString(w, systemPrompt);
        w.Write(messages.Count);
        foreach (var m in messages)
        {
            w.Write(m.IsUser);
            w.Write(m.HasImage);
            WriteString(w, m.Text);
        }
        w.Write(images.Count);
        foreach (var (embeddings, key) in images)
        {
            ct.ThrowIfCancellationRequested();
            w.Write(key is not null);
            if (key is not null) w.Write(key);
            var values = embeddings.ToArray();
            var hidden = (int)embeddings.Shape[^1];
            w.Write(embeddings.TokenCount);
            w.Write(hidden);
            w.Write(MemoryMarshal.AsBytes(values.AsSpan()));
        }
        WriteCache(w, images.Select(i => i.Embeddings).ToArray(), cache, ct);
        w.Write(End);
        w.Flush();
    }

    private static void WriteCache(BinaryWriter w, ImageEmbeddings[] images, (long[] Keys, IDisposable Snapshot)? cache, CancellationToken ct)
    {
        if (cache is not { Snapshot: LlamaSession.Snapshot { Rows: 1, From: 0 } snapshot } exported)
        {
            w.Write(0); // no cached positions: the restored conversation prefills its next prompt in full
            return;
        }
        // Image positions are written as (index in the session, offset): their in-process identities do not survive.
        var index = new Dictionary<long, int>();
        for (var i = 0; i < images.Length; i++) index[Generation.GenerationRun.ImageIdentity(images[i])] = i;
        var keys = new List<long>(exported.Keys.Length);
        foreach (var key in exported.Keys)
        {
            if (key >= 0) { keys.Add(key); continue; }
            var v = -key - 1;
            if (!index.TryGetValue(v / ImageKeyStride, out var at)) break; // an image no longer in the conversation: keep the prefix before it
            keys.Add(-(at * ImageKeyStride + v % ImageKeyStride) - 1);
        }
        var n = Math.Min(keys.Count, snapshot.Count);
        w.Write(n);
        if (n == 0) return;
        foreach (var k in keys.Take(n)) w.Write(k);
        w.Write((int)snapshot.Keys[0].dtype);
        w.Write(snapshot.Keys.Length);
        var shape = snapshot.Keys[0].shape;
        w.Write(shape.Length);
        foreach (var d in shape) w.Write(d);
        w.Flush();
        foreach (var t in snapshot.Keys.Concat(snapshot.Values))
        {
            ct.ThrowIfCancellationRequested();
            using var part = t.narrow(2, 0, n);
            Weights.SafetensorsWriter.WriteData(w.BaseStream, part);
        }
    }

    /// <summary>Reads a conversation written by <see cref="Write"/> and checks it against <paramref name="pipeline"/>.</summary>
    public static SavedSession Read(Stream stream, MiniGptPipeline pipeline, ModelIdentity identity, CancellationToken ct)
    {
        try
        {
            return ReadChecked(stream, pipeline, identity, ct);
        }
        catch (EndOfStreamException e)
        {
            throw new MiniGptSessionException("The saved conversation is truncated.", e);
        }
        catch (DecoderFallbackException e)
        {
            throw new MiniGptSessionException("The saved conversation holds invalid UTF-8 text.", e);
        }
    }

    private static SavedSession ReadChecked(Stream stream, MiniGptPipeline pipeline, ModelIdentity identity, CancellationToken ct)
    {
        using var r = new BinaryReader(stream, new UTF8Encoding(false, throwOnInvalidBytes: true), leaveOpen: true);
        Span<byte> magic = stackalloc byte[8];
        r.BaseStream.ReadExactly(magic);
        if (!magic.SequenceEqual(Magic)) throw new MiniGptSessionException("This is not a saved MiniGpt4 conversation (the magic bytes differ).");
        var version = r.ReadInt32();
        if (version != Version) throw new MiniGptSessionException($"The saved conversation has format version {version}; this library reads version {Version}.");
        var description = ReadString(r);
        var digest = ReadString(r);
        if (digest != identity.Digest)
        {
            var saved = $"{description} [{(digest.Length > 16 ? digest[..16] : digest)}]";
            throw new MiniGptModelMismatchException(
                $"The conversation was saved by another model ({saved}) than this pipeline's ({identity}); restore it with the model that saved it.",
                saved, identity.ToString());
        }
        var system = r.ReadBoolean() ? ReadString(r) : null;
        var count = ReadCount(r, MaxMessages, "messages");
        var messages = new List<ConversationMessage>(Math.Min(count, 1024));
        for (var i = 0; i < count; i++)
        {
            var isUser = r.ReadBoolean();
            var hasImage = r.ReadBoolean();
            var text = ReadString(r);
            if (hasImage && (!isUser || !text.StartsWith(ConversationTemplate.ImageMessage, StringComparison.Ordinal)))
                throw new MiniGptSessionException($"Message {i} is marked as an image message but is not one.");
            messages.Add(new ConversationMessage(isUser, text, hasImage));
        }
        var imageCount = ReadCount(r, MaxMessages, "images");
        if (imageCount != messages.Count(m => m.HasImage))
            throw new MiniGptSessionException($"The saved conversation has {messages.Count(m => m.HasImage)} image messages but {imageCount} images.");
        var tokensPerImage = pipeline.Projector?.TokensPerImage ?? 0;
        var hiddenSize = pipeline.LanguageModel.HiddenSize;
        var images = new List<SavedImage>(imageCount);
        for (var i = 0; i < imageCount; i++)
        {
            ct.ThrowIfCancellationRequested();
            var key = r.ReadBoolean() ? r.ReadBytes(32) : null;
            if (key is { Length: < 32 }) throw new EndOfStreamException();
            var tokens = r.ReadInt32();
            var hidden = r.ReadInt32();
            if (tokens != tokensPerImage || hidden != hiddenSize)
                throw new MiniGptSessionException($"Image {i} has [{tokens}, {hidden}] embeddings; this model's images are [{tokensPerImage}, {hiddenSize}].");
            var values = new float[tokens * hidden];
            r.BaseStream.ReadExactly(MemoryMarshal.AsBytes(values.AsSpan()));
            images.Add(new SavedImage(key, tokens, hidden, values));
        }
        var (keys, cache) = ReadCache(r, pipeline, images, ct);
        try
        {
            Span<byte> end = stackalloc byte[4];
            r.BaseStream.ReadExactly(end);
            if (!end.SequenceEqual(End)) throw new MiniGptSessionException("The saved conversation does not end where its contents say it should (corrupt).");
            return new SavedSession(system, messages, images, keys, cache);
        }
        catch
        {
            cache?.Dispose();
            throw;
        }
    }

    private static (long[]? Keys, LlamaSession.Snapshot? Cache) ReadCache(BinaryReader r, MiniGptPipeline pipeline, List<SavedImage> images, CancellationToken ct)
    {
        var lm = pipeline.LanguageModel;
        var n = ReadCount(r, lm.ContextLength, "cached positions");
        if (n == 0) return (null, null);
        var keys = new long[n];
        for (var i = 0; i < n; i++)
        {
            var key = r.ReadInt64();
            if (key >= lm.VocabSize) throw new MiniGptSessionException($"Cached position {i} holds token {key}, outside the vocabulary.");
            if (key < 0)
            {
                var v = -key - 1;
                var (image, offset) = (v / ImageKeyStride, v % ImageKeyStride);
                if (image >= images.Count || offset >= images[(int)image].Tokens)
                    throw new MiniGptSessionException($"Cached position {i} names image position {image}:{offset}, which the conversation does not have.");
            }
            keys[i] = key;
        }
        var dtype = (ScalarType)r.ReadInt32();
        var layers = ReadCount(r, 4096, "cache layers");
        var rank = ReadCount(r, 8, "cache dimensions");
        var shape = new long[rank];
        for (var i = 0; i < rank; i++) shape[i] = r.ReadInt64();
        // The layout this model's cache has: [1, kv heads, n, head dim] per layer, keys then values, in the model's dtype.
        var expected = lm is LlamaLanguageModel llama
            ? (DType: llama.Model.DType, Layers: llama.Model.Config.NumHiddenLayers,
               Shape: new long[] { 1, llama.Model.Config.NumKeyValueHeads, n, llama.Model.Config.HeadDim })
            : default;
        if (shape.Any(d => d <= 0 || d > (1L << 20)) || !Enum.IsDefined(dtype))
            throw new MiniGptSessionException("The saved key/value cache has an invalid shape or dtype.");
        var elementSize = Weights.DTypes.ElementSize(dtype);
        var bytes = 2L * layers * shape.Aggregate(1L, (a, d) => checked(a * d)) * elementSize;
        if (expected.Shape is null || dtype != expected.DType || layers != expected.Layers || !shape.SequenceEqual(expected.Shape))
        {
            // Same model, another cache layout (for example saved in float32, restored in bfloat16): skip the cache,
            // the next turn prefills the prompt in full. The answer is the model's in this dtype.
            if (shape.Length != 4 || shape[2] != n || bytes > 64L * lm.CacheBytesPerPosition * n + (1L << 20))
                throw new MiniGptSessionException("The saved key/value cache does not match its positions.");
            r.BaseStream.CopyTo(Stream.Null, bytes);
            return (null, null);
        }
        var tensors = new List<Tensor>(2 * layers);
        try
        {
            for (var i = 0; i < 2 * layers; i++)
            {
                ct.ThrowIfCancellationRequested();
                var t = torch.empty(shape, dtype);
                tensors.Add(t);
                ReadInto(r.BaseStream, t);
            }
            var keysTensors = tensors.Take(layers).ToArray();
            var valueTensors = tensors.Skip(layers).ToArray();
            return (keys, new LlamaSession.Snapshot(0, 1, n, keysTensors, valueTensors));
        }
        catch
        {
            foreach (var t in tensors) t.Dispose();
            throw;
        }
    }

    private static void ReadInto(Stream stream, Tensor t)
    {
        using var flat = t.view(-1);
        var n = flat.shape[0];
        var perChunk = Math.Max(1, (1L << 30) / t.ElementSize);
        for (long first = 0; first < n; first += perChunk)
        {
            using var part = flat.narrow(0, first, Math.Min(perChunk, n - first));
            stream.ReadExactly(part.bytes);
        }
    }

    private static void CopyTo(this Stream from, Stream to, long bytes)
    {
        var buffer = new byte[81920];
        while (bytes > 0)
        {
            var read = from.Read(buffer, 0, (int)Math.Min(buffer.Length, bytes));
            if (read == 0) throw new EndOfStreamException();
            to.Write(buffer, 0, read);
            bytes -= read;
        }
    }

    private static int ReadCount(BinaryReader r, int max, string what)
    {
        var count = r.ReadInt32();
        if (count < 0 || count > max) throw new MiniGptSessionException($"The saved conversation declares {count} {what} (at most {max}).");
        return count;
    }

    private static void WriteString(BinaryWriter w, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        w.Write(bytes.Length);
        w.Write(bytes);
    }

    private static string ReadString(BinaryReader r)
    {
        var length = ReadCount(r, MaxStringBytes, "bytes of text");
        var bytes = new byte[length];
        r.BaseStream.ReadExactly(bytes);
        return new UTF8Encoding(false, throwOnInvalidBytes: true).GetString(bytes);
    }
}
