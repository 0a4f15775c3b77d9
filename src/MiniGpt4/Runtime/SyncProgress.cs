namespace MiniGpt4.Runtime;

/// <summary>
/// An <see cref="IProgress{T}"/> that forwards on the reporting thread. <see cref="Progress{T}"/> posts to the
/// captured context (the thread pool in a library), so its reports can arrive late and out of order.
/// </summary>
internal sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
{
    /// <inheritdoc />
    public void Report(T value) => report(value);
}
