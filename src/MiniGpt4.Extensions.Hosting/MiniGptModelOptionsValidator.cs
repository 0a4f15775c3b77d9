using Microsoft.Extensions.Options;

namespace MiniGpt4.Extensions.Hosting;

/// <summary>
/// Checks <see cref="MiniGptModelOptions"/> when the host starts: every refusal names the configuration key. The files
/// themselves are not opened here: a missing or broken model is a load failure, reported by the health check.
/// </summary>
internal sealed class MiniGptModelOptionsValidator(string name, string section) : IValidateOptions<MiniGptModelOptions>
{
    public ValidateOptionsResult Validate(string? optionsName, MiniGptModelOptions options)
    {
        if (optionsName != name) return ValidateOptionsResult.Skip;
        var failures = new List<string>();
        void Require(bool ok, string key, string problem)
        {
            if (!ok) failures.Add($"{section}:{key} {problem}");
        }
        Require(!string.IsNullOrWhiteSpace(options.ModelPath), nameof(options.ModelPath), "is required (a minigpt4.json manifest or its folder).");
        Require(!string.IsNullOrWhiteSpace(options.Device), nameof(options.Device), "must be cpu, cuda or cuda:N.");
        Require(Enum.IsDefined(options.DType), nameof(options.DType), $"must be float32, bfloat16 or float16 (got {options.DType}).");
        Require(options.Threads is null or > 0, nameof(options.Threads), $"must be positive (got {options.Threads}).");
        Require(options.ContextLength is null or > 0, nameof(options.ContextLength), $"must be positive (got {options.ContextLength}).");
        Require(options.MaxConcurrentRequests > 0, nameof(options.MaxConcurrentRequests), $"must be positive (got {options.MaxConcurrentRequests}).");
        Require(options.MaxQueuedRequests >= 0, nameof(options.MaxQueuedRequests), $"must not be negative (got {options.MaxQueuedRequests}).");
        Require(options.MemoryBudgetBytes is null or > 0, nameof(options.MemoryBudgetBytes), $"must be positive (got {options.MemoryBudgetBytes}).");
        Require(options.MaxCachedConversations >= 0, nameof(options.MaxCachedConversations), $"must not be negative (got {options.MaxCachedConversations}).");
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }
}
