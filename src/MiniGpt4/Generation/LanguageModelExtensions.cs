using System.Runtime.CompilerServices;
using MiniGpt4.Generation;

namespace MiniGpt4.Abstractions;

/// <summary>Decoding over any <see cref="ILanguageModel"/> with the library's engine.</summary>
public static class LanguageModelExtensions
{
    private static readonly ConditionalWeakTable<LanguageModelCache, ConversationCache> Conversations = new();

    /// <summary>
    /// Generates from <paramref name="prompt"/> with the library's engine (no template, no admission), streaming text
    /// deltas; the last update carries the finish reason and the usage. With a <paramref name="cache"/> from
    /// <see cref="ILanguageModel.CreateCache"/>, positions it shares with the previous prompt are reused, and a
    /// generation that does not finish leaves it as it was. Prefer <c>MiniGptPipeline.GenerateAsync</c> in a service: it is admitted.
    /// </summary>
    /// <exception cref="MiniGptContextLengthException">The prompt plus MaxNewTokens exceeds the context.</exception>
    /// <exception cref="OperationCanceledException">Cancelled, within one decoding step.</exception>
    public static IAsyncEnumerable<GenerationUpdate> GenerateAsync(this ILanguageModel model, PromptSequence prompt, GenerationOptions options,
        LanguageModelCache? cache = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(model);
        var conversation = cache is null ? null : Conversations.GetValue(cache, c => new ConversationCache(model, c));
        return GenerationEngine.For(model).GenerateAsync(prompt, options, conversation, cancellationToken);
    }
}
