using MiniGpt4.Abstractions;
using System.Runtime.CompilerServices;
using MiniGpt4.Runtime;

namespace MiniGpt4.Generation;

/// <summary>
/// The decoding engine over one <see cref="ILanguageModel"/>: runs each request's prefill and steps
/// (<see cref="GenerationRun"/>) on the thread pool, one native call at a time for the model. The gate is held
/// for one call only, never while the caller has control (across a <c>yield</c>), so several generations
/// interleave their steps, and a stream left unread or disposed late blocks nobody.
/// </summary>
internal sealed class GenerationEngine(ILanguageModel model)
{
    private static readonly ConditionalWeakTable<ILanguageModel, GenerationEngine> Engines = new();
    private readonly ComputeGate _gate = new(nameof(GenerationEngine));
    /// <summary>The one engine of <paramref name="model"/> (every caller shares its gate).</summary>
    public static GenerationEngine For(ILanguageModel model) => Engines.GetValue(model, m => new GenerationEngine(m));

    /// <summary>
    /// The model's name in telemetry (<c>gen_ai.request.model</c>, the span name <c>chat {model}</c>): the variant's manifest
    /// name when a pipeline owns the engine, else the language model's type name.
    /// </summary>
    public string? ModelName { get; set; }

    /// <summary>A conversation's cache (its memory is allocated on first use).</summary>
    public ConversationCache CreateCache() => new(model);

    /// <summary>
    /// Generates from <paramref name="prompt"/>, streaming text deltas; the last update carries the finish reason, the
    /// usage and the timings. With a <paramref name="cache"/>, the positions it shares with the prompt are reused, and a
    /// generation that does not finish (cancelled, failed, abandoned) leaves the cache as it was.
    /// </summary>
    /// <exception cref="MiniGptContextLengthException">The prompt plus MaxNewTokens exceeds the context.</exception>
    /// <exception cref="OperationCanceledException">Cancelled, within one step (one layer during the prefill).</exception>
    public async IAsyncEnumerable<GenerationUpdate> GenerateAsync(PromptSequence prompt, GenerationOptions options,
        ConversationCache? cache = null, [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var promptLength = prompt.Length - prompt.SkipLeft;
        if (promptLength <= 0) throw new ArgumentException("The prompt is empty.", nameof(prompt));
        if (promptLength + options.MaxNewTokens > model.ContextLength)
            throw new MiniGptContextLengthException(
                $"The prompt ({promptLength} positions) plus MaxNewTokens ({options.MaxNewTokens}) exceeds the model's context ({model.ContextLength}).",
                promptLength, options.MaxNewTokens, model.ContextLength);
        if (cache is not null && cache.Model != model)
            throw new ArgumentException("The cache was created for another language model.", nameof(cache));
        cancellationToken.ThrowIfCancellationRequested();

        var owned = cache is null ? CreateCache() : null;
        var conversation = owned ?? cache!;
        conversation.BeginTurn();
        var run = new GenerationRun(model, prompt, options, conversation);
        var telemetry = new RequestTelemetry(ModelName ?? model.GetType().Name, model, prompt, options);
        var finished = false;
        try
        {
            await Observe(_gate.RunAsync(() => { run.Prefill(cancellationToken); return true; }, cancellationToken), telemetry).ConfigureAwait(false);
            while (!finished)
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    telemetry.Failed(new OperationCanceledException(cancellationToken));
                    cancellationToken.ThrowIfCancellationRequested();
                }
                var update = await Observe(_gate.RunAsync(run.Next, cancellationToken), telemetry).ConfigureAwait(false);
                if (update is null) continue;
                finished = update.FinishReason is not null;
                telemetry.Update(update);
                if (finished) telemetry.Finished(update, RequestTelemetry.ImagePositions(prompt));
                yield return update;
            }
        }
        finally
        {
            telemetry.Ended();
            run.Dispose();
            if (!finished) conversation.Rollback();
            conversation.EndTurn();
            owned?.Dispose();
        }
    }

    /// <summary>Records a failed call's exception type on the request's telemetry (an iterator cannot catch around a yield).</summary>
    private static async Task<T> Observe<T>(Task<T> call, RequestTelemetry telemetry)
    {
        try
        {
            return await call.ConfigureAwait(false);
        }
        catch (Exception e)
        {
            telemetry.Failed(e);
            throw;
        }
    }
}
