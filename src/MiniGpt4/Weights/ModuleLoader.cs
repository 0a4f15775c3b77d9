using TorchSharp;

namespace MiniGpt4.Weights;

/// <summary>
/// Fills a module's parameters and persistent buffers (its <c>state_dict</c> keys) from a weight
/// source, after validating every key: TorchSharp's own <c>load_state_dict</c> reports no key names,
/// throws raw native errors on shape mismatches and silently converts dtypes.
/// </summary>
internal static class ModuleLoader
{
    private const int MaxListedProblems = 20;

    /// <summary>
    /// Validates EVERY key first: a module key missing from the file (and not in <see cref="LoadRules.AllowMissing"/>),
    /// a file key the module lacks (and not in <see cref="LoadRules.Ignore"/>), a shape mismatch and an
    /// integer/float/bool kind mismatch each fail with one <see cref="MiniGptWeightsException"/> listing every problem
    /// with file, key, expected and actual shape/dtype. Only then reads each tensor straight into its parameter
    /// (casting floating types to the parameter's dtype in bounded chunks), so peak memory is the module's own bytes
    /// plus one chunk. Returns the bytes written into the module's tensors.
    /// </summary>
    public static long Load(torch.nn.Module module, IWeightSource source, LoadRules rules, IProgress<double>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(rules);
        PrepareModule(module, rules);
        var targets = module.state_dict();

        var problems = new List<(string Key, string Message)>();
        var loads = new List<(string Key, torch.Tensor Target)>();
        foreach (var key in source.Keys)
        {
            if (!source.TryGetInfo(key, out var info)) continue;
            if (!targets.TryGetValue(key, out var target))
            {
                if (!rules.Ignore.Any(p => LoadRules.IsMatch(p, key)))
                    problems.Add((key, $"unexpected key '{key}' {info.Describe()}: the module has no such parameter or buffer (add it to Ignore if it is unused)"));
                continue;
            }
            if (target.device_type == DeviceType.META)
                problems.Add((key, $"module tensor '{key}' is on the meta device and cannot be filled (build the module with EmptyInit instead)"));
            else if (!target.shape.SequenceEqual(info.Shape))
                problems.Add((key, $"shape mismatch for '{key}': the module expects {DTypes.FormatShape(target.shape)} {target.dtype}, the file has {info.Describe()}"));
            else if (Kind(target.dtype) != Kind(info.DType))
                problems.Add((key, $"dtype mismatch for '{key}': the module expects {target.dtype}, the file has {info.DType} (only floating types are converted)"));
            else
                loads.Add((key, target));
        }
        foreach (var (key, target) in targets)
            if (!source.TryGetInfo(key, out _) && !rules.AllowMissing.Any(p => LoadRules.IsMatch(p, key)))
                problems.Add((key, $"missing key '{key}': the module expects {DTypes.FormatShape(target.shape)} {target.dtype}, the file has no such tensor (add it to AllowMissing if it may keep its value)"));
        if (problems.Count > 0) throw Problems(source, problems);

        var total = Math.Max(1, loads.Sum(l => Bytes(l.Target)));
        long done = 0;
        using var noGrad = torch.no_grad();
        foreach (var (key, target) in loads)
        {
            try
            {
                if (!source.TryShareInto(key, target)) source.ReadInto(key, target);
            }
            catch (Exception ex) when (ex is not (MiniGptWeightsException or OutOfMemoryException))
            {
                throw new MiniGptWeightsException($"{source.Description}: loading '{key}' failed: {ex.Message}", source.Description, key, ex);
            }
            done += Bytes(target);
            progress?.Report((double)done / total);
        }
        progress?.Report(1.0);
        return done;
    }

    /// <summary>Returns <paramref name="owned"/> once <paramref name="fill"/> has run on it; disposes it and rethrows when that fails.</summary>
    public static T LoadOrDispose<T>(T owned, Action<T> fill) where T : IDisposable
    {
        try
        {
            fill(owned);
            return owned;
        }
        catch
        {
            owned.Dispose();
            throw;
        }
    }

    private static long Bytes(torch.Tensor t) => t.NumberOfElements * t.ElementSize;

    private static void PrepareModule(torch.nn.Module module, LoadRules rules)
    {
        if (rules.DType is { } dtype)
        {
            if (!DTypes.IsFloating(dtype)) throw new ArgumentException($"LoadRules.DType must be a floating type, not {dtype}", nameof(rules));
            if (module.state_dict().Values.Any(t => DTypes.IsFloating(t.dtype) && t.dtype != dtype)) module.to(dtype);
        }
        if (rules.Device is { } device && module.state_dict().Values.Any(t => t.device.type != device.type || (device.index >= 0 && t.device.index != device.index)))
            module.to(device);
    }

    private static int Kind(torch.ScalarType t) => t == torch.ScalarType.Bool ? 2 : DTypes.IsFloating(t) ? 1 : 0;

    private static MiniGptWeightsException Problems(IWeightSource source, List<(string Key, string Message)> problems)
    {
        var listed = string.Concat(problems.Take(MaxListedProblems).Select(p => "\n  - " + p.Message));
        var more = problems.Count > MaxListedProblems ? $"\n  ... and {problems.Count - MaxListedProblems} more" : "";
        return new MiniGptWeightsException(
            $"{source.Description}: {problems.Count} problem{(problems.Count == 1 ? "" : "s")} loading weights into the module:{listed}{more}",
            source.Description, problems[0].Key);
    }
}

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

    /// <summary>True when <paramref name="key"/> matches the glob <paramref name="pattern"/>: <c>*</c> matches any (possibly empty) run of characters.</summary>
    internal static bool IsMatch(string pattern, string key)
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
}
