using System.Runtime.CompilerServices;

namespace MiniGpt4.Generation;

/// <summary>
/// Async streaming over a <see cref="Generator"/>. Each synchronous step (its tensor work, dispose
/// scope and no-grad guard all inside) runs on the thread pool; the iterator awaits only between
/// steps, so no scope or guard ever spans an await.
/// </summary>
internal static class GenerationStream
{
    /// <summary>
    /// Yields each generated token as soon as it is chosen. Cancellation is checked between steps
    /// (a running forward is not interrupted): the stream then ends normally and the generator's
    /// <see cref="Generator.Finish"/> is <see cref="FinishReason.Cancelled"/>, its
    /// <see cref="Generator.Result"/> holding exactly the tokens yielded. Beam search has no token
    /// stream: its steps run the same way and the best hypothesis is yielded at the end.
    /// A consumer that stops enumerating early also leaves the run <see cref="FinishReason.Cancelled"/>.
    /// <paramref name="offload"/> = false runs steps on the caller's thread.
    /// </summary>
    public static async IAsyncEnumerable<int> StreamAsync(Generator generator,
        [EnumeratorCancellation] CancellationToken ct = default, bool offload = true)
    {
        ArgumentNullException.ThrowIfNull(generator);
        if (generator.IsBeamSearch)
        {
            while (generator.Finish is null)
            {
                if (ct.IsCancellationRequested) { generator.Cancel(); break; }
                if (offload) await Task.Run(generator.TryBeamStep).ConfigureAwait(false);
                else generator.TryBeamStep();
            }
            foreach (var id in generator.Result.TokenIds) yield return id;
            yield break;
        }
        try
        {
            while (true)
            {
                if (ct.IsCancellationRequested) { generator.Cancel(); yield break; }
                var (produced, token) = offload
                    ? await Task.Run(() => (generator.TryStep(out var t), t)).ConfigureAwait(false)
                    : (generator.TryStep(out var t2), t2);
                if (!produced) yield break;
                yield return token;
            }
        }
        finally
        {
            generator.Cancel(); // a consumer that stops enumerating early ends the run as Cancelled (no-op once finished)
        }
    }
}
