using System.Runtime.CompilerServices;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace MiniGpt4.Extensions.Hosting;

/// <summary>
/// Logs each request's token counts when it ends and each refusal (queue full, context too long, a bad image or option)
/// with its reason. The non-streaming call is the streamed one put together, as in the inner client.
/// </summary>
internal sealed class LoggingChatClient(IChatClient inner, ILogger logger, string name) : DelegatingChatClient(inner)
{
    public override Task<ChatResponse> GetResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null, CancellationToken cancellationToken = default)
        => GetStreamingResponseAsync(messages, options, cancellationToken).ToChatResponseAsync(cancellationToken);

    public override async IAsyncEnumerable<ChatResponseUpdate> GetStreamingResponseAsync(IEnumerable<ChatMessage> messages, ChatOptions? options = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        await using var e = base.GetStreamingResponseAsync(messages, options, cancellationToken).GetAsyncEnumerator(cancellationToken);
        while (true)
        {
            ChatResponseUpdate update;
            try
            {
                if (!await e.MoveNextAsync().ConfigureAwait(false)) yield break;
                update = e.Current;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                HostingLog.Cancelled(logger, name);
                throw;
            }
            catch (Exception ex) when (ex is MiniGptException or NotSupportedException or ArgumentException)
            {
                HostingLog.Refused(logger, name, ex.GetType().Name, ex.Message);
                throw;
            }
            if (update.FinishReason is { } finish && update.Contents.OfType<UsageContent>().FirstOrDefault() is { } usage)
                HostingLog.Answered(logger, name, usage.Details.InputTokenCount ?? 0, usage.Details.OutputTokenCount ?? 0,
                    usage.Details.CachedInputTokenCount ?? 0, finish.Value);
            yield return update;
        }
    }
}
