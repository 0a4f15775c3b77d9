using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>How <see cref="ModuleLoader.Load"/> matches a file against a module.</summary>
internal sealed class LoadRules
{
    /// <summary>No ignores, nothing may be missing, keep the module's dtype and device.</summary>
    public static LoadRules Strict { get; } = new();

    /// <summary>
    /// Glob patterns (<c>*</c> matches any run of characters, dots included) of FILE keys the module
    /// lacks and may skip, e.g. <c>*.rotary_emb.inv_freq</c>, <c>t5_proj.*</c>, <c>*.position_ids</c>.
    /// </summary>
    public IReadOnlyList<string> Ignore { get; init; } = [];

    /// <summary>Glob patterns of MODULE keys that may be absent from the file (they keep their values).</summary>
    public IReadOnlyList<string> AllowMissing { get; init; } = [];

    /// <summary>
    /// The dtype the module's floating tensors must have. When set and a floating parameter or
    /// buffer has another dtype, the module is converted (<c>module.to(dtype)</c>) before loading; build
    /// the module in this dtype (see <see cref="EmptyInit"/>) to avoid that extra pass. Floating file
    /// tensors are always cast to the module tensor's dtype, tensor by tensor, while loading.
    /// </summary>
    public torch.ScalarType? DType { get; init; }

    /// <summary>The device the module must be on; moved there (<c>module.to(device)</c>) before loading when it is not.</summary>
    public torch.Device? Device { get; init; }
}

/// <summary>What <see cref="ModuleLoader.Load"/> did: module keys loaded, file keys ignored, module keys left as they were, bytes written.</summary>
internal sealed record LoadReport(IReadOnlyList<string> Loaded, IReadOnlyList<string> Ignored, IReadOnlyList<string> MissingAllowed, long Bytes);

/// <summary>Glob matching for key patterns: <c>*</c> matches any (possibly empty) run of characters.</summary>
internal static class KeyGlob
{
    /// <summary>True when <paramref name="key"/> matches <paramref name="pattern"/>.</summary>
    public static bool IsMatch(string pattern, string key)
    {
        int p = 0, k = 0, star = -1, mark = 0;
        while (k < key.Length)
        {
            if (p < pattern.Length && pattern[p] == '*') { star = p++; mark = k; }
            else if (p < pattern.Length && pattern[p] == key[k]) { p++; k++; }
            else if (star >= 0) { p = star + 1; k = ++mark; }
            else return false;
        }
        while (p < pattern.Length && pattern[p] == '*') p++;
        return p == pattern.Length;
    }

    /// <summary>True when any of <paramref name="patterns"/> matches <paramref name="key"/>.</summary>
    public static bool AnyMatch(IReadOnlyList<string> patterns, string key)
    {
        foreach (var p in patterns) if (IsMatch(p, key)) return true;
        return false;
    }
}
