using MiniGpt4.Abstractions;

namespace MiniGpt4.Tests.Support;

/// <summary>
/// A user's own <see cref="ILanguageModel"/> as a test writes one: every member passes through to
/// <paramref name="inner"/> (a separate model to the engine, so it gets an engine of its own). Override a
/// member to observe it. Disposing it leaves <paramref name="inner"/> alone unless <paramref name="ownsInner"/>.
/// </summary>
internal class DelegatingLanguageModel(ILanguageModel inner, bool ownsInner = false) : ILanguageModel
{
    public int VocabSize => inner.VocabSize;
    public int HiddenSize => inner.HiddenSize;
    public int ContextLength => inner.ContextLength;
    public int EndOfSequenceId => inner.EndOfSequenceId;
    public int BeginningOfSequenceId => inner.BeginningOfSequenceId;
    public long CacheBytesPerPosition => inner.CacheBytesPerPosition;
    public IReadOnlyList<int> Tokenize(string text, bool addBos) => inner.Tokenize(text, addBos);
    public string Detokenize(IReadOnlyList<int> ids, bool skipSpecialTokens = true) => inner.Detokenize(ids, skipSpecialTokens);
    public LanguageModelCache CreateCache() => inner.CreateCache();

    public virtual void Prefill(LanguageModelCache cache, PromptSequence prompt, Span<float> logits, CancellationToken cancellationToken = default)
        => inner.Prefill(cache, prompt, logits, cancellationToken);

    public virtual void Step(LanguageModelCache cache, ReadOnlySpan<int> tokenPerRow, Span<float> logits) => inner.Step(cache, tokenPerRow, logits);

    public void Dispose()
    {
        if (ownsInner) inner.Dispose();
    }
}
