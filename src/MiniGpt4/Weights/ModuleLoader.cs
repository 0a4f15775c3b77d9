using System.Text;
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
    /// Validates EVERY key first: a module key missing from the file (and not in
    /// <see cref="LoadRules.AllowMissing"/>), a file key the module lacks (and not in
    /// <see cref="LoadRules.Ignore"/>), a shape mismatch and an integer/float/bool kind mismatch each
    /// fail with one <see cref="MiniGptWeightsException"/> listing every problem with file, key,
    /// expected and actual shape/dtype. Only then reads each tensor straight into its parameter
    /// (casting floating types to the parameter's dtype in bounded chunks), so peak memory is the
    /// module's own bytes plus one chunk.
    /// </summary>
    public static LoadReport Load(torch.nn.Module module, IWeightSource source, LoadRules rules, IProgress<double>? progress = null)
    {
        ArgumentNullException.ThrowIfNull(module);
        ArgumentNullException.ThrowIfNull(source);
        ArgumentNullException.ThrowIfNull(rules);
        PrepareModule(module, rules);
        var targets = module.state_dict();

        var problems = new List<(string Key, string Message)>();
        var loaded = new List<(string Key, torch.Tensor Target, long Bytes)>();
        var ignored = new List<string>();
        var missingAllowed = new List<string>();
        foreach (var key in source.Keys)
        {
            if (!source.TryGetInfo(key, out var info)) continue;
            if (!targets.TryGetValue(key, out var target))
            {
                if (KeyGlob.AnyMatch(rules.Ignore, key)) ignored.Add(key);
                else problems.Add((key, $"unexpected key '{key}' {info.Describe()}: the module has no such parameter or buffer (add it to Ignore if it is unused)"));
                continue;
            }
            var expected = target.shape;
            if (target.device_type == DeviceType.META)
                problems.Add((key, $"module tensor '{key}' is on the meta device and cannot be filled (build the module with EmptyInit instead)"));
            else if (!expected.SequenceEqual(info.Shape))
                problems.Add((key, $"shape mismatch for '{key}': the module expects {DTypes.FormatShape(expected)} {target.dtype}, the file has {info.Describe()}"));
            else if (Kind(target.dtype) != Kind(info.DType))
                problems.Add((key, $"dtype mismatch for '{key}': the module expects {target.dtype}, the file has {info.DType} (only floating types are converted)"));
            else
                loaded.Add((key, target, target.NumberOfElements * target.ElementSize));
        }
        foreach (var key in targets.Keys)
        {
            if (source.TryGetInfo(key, out _)) continue;
            if (KeyGlob.AnyMatch(rules.AllowMissing, key)) missingAllowed.Add(key);
            else problems.Add((key, $"missing key '{key}': the module expects {DTypes.FormatShape(targets[key].shape)} {targets[key].dtype}, the file has no such tensor (add it to AllowMissing if it may keep its value)"));
        }
        if (problems.Count > 0) throw Problems(source, problems);

        var total = Math.Max(1, loaded.Sum(l => l.Bytes));
        long done = 0;
        using (torch.no_grad())
        {
            foreach (var (key, target, bytes) in loaded)
            {
                try
                {
                    source.ReadInto(key, target);
                }
                catch (MiniGptWeightsException) { throw; }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    throw new MiniGptWeightsException($"{source.Description}: loading '{key}' failed: {ex.Message}", source.Description, key, ex);
                }
                done += bytes;
                progress?.Report((double)done / total);
            }
        }
        progress?.Report(1.0);
        return new LoadReport(loaded.Select(l => l.Key).ToList(), ignored, missingAllowed, done);
    }

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
        var sb = new StringBuilder();
        sb.Append(source.Description).Append(": ").Append(problems.Count).Append(problems.Count == 1 ? " problem" : " problems")
          .Append(" loading weights into the module:");
        foreach (var (_, m) in problems.Take(MaxListedProblems)) sb.Append("\n  - ").Append(m);
        if (problems.Count > MaxListedProblems) sb.Append("\n  ... and ").Append(problems.Count - MaxListedProblems).Append(" more");
        return new MiniGptWeightsException(sb.ToString(), source.Description, problems[0].Key);
    }
}
