using MiniGpt4.Abstractions;
using System.Runtime.CompilerServices;

namespace MiniGpt4.Generation;

/// <summary>
/// The decoding engine over one <see cref="ILanguageModel"/>: every request's prefill and steps run on the model's
/// <see cref="DecodeScheduler"/>, which batches the decode steps of all running answers into one forward (continuous
/// batching). The caller's stream only reads updates, so a stream left unread or disposed late blocks nobody; an
/// answer's tokens are the same whether it runs alone or beside others.
/// </summary>
internal sealed class GenerationEngine(ILanguageModel model)
{
    private static readonly ConditionalWeakTable<ILanguageModel, GenerationEngine> Engines = new();
    private readonly DecodeScheduler _scheduler = new(model);
    /// <summary>The one engine of <paramref name="model"/> (every caller shares its scheduler).</summary>
    public static GenerationEngine For(ILanguageModel model) => Engines.GetValue(model, m => new GenerationEngine(m));

    /// <summary>
    /// The model's name in telemetry (<c>gen_ai.request.model</c>, the span name <c>chat {model}</c>): the variant's manifest
    /// name when a pipeline owns the engine, else the language model's type name.
    /// </summary>
    public string? ModelName { get; set; }

    /// <summary>Decode steps so far that stepped two answers or more in one forward (diagnostics, tests).</summary>
    public long SharedSteps => _scheduler.SharedSteps;

    /// <summary>Decode steps so far that ran while another answer's prompt was part-way prefilled (diagnostics, tests).</summary>
    public long StepsDuringPrefill => _scheduler.StepsDuringPrefill;

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
        var answer = new ScheduledAnswer(run, conversation, promptLength, cancellationToken);
        try
        {
            _scheduler.Submit(answer);
            while (!finished)
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    telemetry.Failed(new OperationCanceledException(cancellationToken));
                    cancellationToken.ThrowIfCancellationRequested();
                }
                var update = await Observe(answer.ReadAsync(cancellationToken), telemetry).ConfigureAwait(false)
                    ?? throw new InvalidOperationException("The generation ended without a final update.");
                finished = update.FinishReason is not null;
                telemetry.Update(update);
                if (finished) telemetry.Finished(update, RequestTelemetry.ImagePositions(prompt));
                yield return update;
            }
        }
        finally
        {
            // The scheduler lets go of the run and the cache before they are rolled back or freed.
            answer.Abandon();
            await answer.Released.ConfigureAwait(false);
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
