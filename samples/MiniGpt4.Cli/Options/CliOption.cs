using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;

namespace MiniGpt4.Cli.Options;

/// <summary>
/// Option factories with the sample's conventions: numbers parse with the invariant culture, a bad value is a
/// parse error that names the option (exit 2, never an exception), and a single-valued option given twice keeps
/// its last value, as the hand-written parser did, so a script can append an override to a shared command line.
/// </summary>
internal static class CliOption
{
    /// <summary>A string value.</summary>
    public static Option<string?> Text(string name, string description, string helpName, bool required = false) =>
        Scalar<string?>(name, description, helpName, required, (_, s) => s);

    /// <summary>A 32-bit float.</summary>
    public static Option<float?> Number(string name, string description, string helpName = "X") =>
        Scalar<float?>(name, description, helpName, false, (r, s) =>
            float.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v : Invalid<float?>(r, name, s, "a number"));

    /// <summary>A 32-bit integer.</summary>
    public static Option<int?> Int(string name, string description, string helpName = "N") =>
        Scalar<int?>(name, description, helpName, false, (r, s) => ParseInt(r, name, s));

    /// <summary>A 64-bit integer.</summary>
    public static Option<long?> Long(string name, string description, string helpName = "N") =>
        Scalar<long?>(name, description, helpName, false, (r, s) =>
            long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : Invalid<long?>(r, name, s, "an integer"));

    /// <summary>One of a fixed set of words (case-insensitive); <paramref name="values"/> maps each accepted word, aliases included.</summary>
    public static Option<T?> Choice<T>(string name, string description, IReadOnlyDictionary<string, T> values, params string[] shown)
        where T : struct
    {
        var words = shown.Length > 0 ? shown : values.Keys.ToArray();
        var option = Scalar<T?>(name, description, string.Join('|', words), false, (r, s) =>
            values.TryGetValue(s.ToLowerInvariant(), out var v) ? v : Invalid<T?>(r, name, s, Alternatives(words)));
        option.CompletionSources.Add(words);
        return option;
    }

    /// <summary>One of a fixed set of words (case-insensitive), kept as the word itself.</summary>
    public static Option<string?> Word(string name, string description, IReadOnlyList<string> words, bool required = false)
    {
        var option = Scalar<string?>(name, description, string.Join('|', words), required, (r, s) =>
            words.FirstOrDefault(w => string.Equals(w, s, StringComparison.OrdinalIgnoreCase)) ?? Invalid<string?>(r, name, s, Alternatives(words)));
        option.CompletionSources.Add(words.ToArray());
        return option;
    }

    /// <summary>A comma-separated list of positive integers (<c>--context 16,1024,2048</c>); the last occurrence wins.</summary>
    public static Option<int[]?> IntCsv(string name, string description, string helpName = "N,N,...") =>
        Scalar<int[]?>(name, description, helpName, false, (r, s) =>
        {
            var parts = s.Split(',', StringSplitOptions.TrimEntries);
            var values = new int[parts.Length];
            for (var i = 0; i < parts.Length; i++)
                if (!int.TryParse(parts[i], NumberStyles.Integer, CultureInfo.InvariantCulture, out values[i]) || values[i] < 1)
                    return Invalid<int[]?>(r, name, s, "positive integers separated by commas");
            return values;
        });

    /// <summary>Makes a value of <paramref name="option"/> outside [<paramref name="min"/>, <paramref name="max"/>] a parse error naming the option.</summary>
    public static void Range(Option<int?> option, int min, int max) => option.Validators.Add(r =>
    {
        if (r.GetValueOrDefault<int?>() is int v && (v < min || v > max))
            r.AddError($"invalid value '{v}' for {option.Name}: expected an integer from {min} to {max}");
    });

    /// <summary>Makes a value of <paramref name="option"/> that is not a positive finite number a parse error naming the option.</summary>
    public static void Positive(Option<float?> option) => option.Validators.Add(r =>
    {
        if (r.GetValueOrDefault<float?>() is float v && !(v > 0 && float.IsFinite(v)))
            r.AddError($"invalid value '{v}' for {option.Name}: expected a positive number");
    });

    /// <summary>Makes a seed outside [0, <paramref name="max"/>] a parse error naming the option.</summary>
    public static void Seed(Option<long?> option, long max = long.MaxValue) => option.Validators.Add(r =>
    {
        if (r.GetValueOrDefault<long?>() is long v && (v < 0 || v > max))
            r.AddError($"invalid value '{v}' for {option.Name}: expected an integer from 0 to {max}");
    });

    /// <summary>A repeatable string option: <c>--stop a --stop b</c>.</summary>
    public static Option<string[]> TextList(string name, string description, string helpName) => new(name)
    {
        Description = description,
        HelpName = helpName,
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
        DefaultValueFactory = _ => [],
    };

    /// <summary>A repeatable integer option: <c>--stop-token-id 1 --stop-token-id 2</c>.</summary>
    public static Option<int[]> IntList(string name, string description, string helpName = "N") => new(name)
    {
        Description = description,
        HelpName = helpName,
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
        DefaultValueFactory = _ => [],
        CustomParser = r => r.Tokens.Select(t => ParseInt(r, name, t.Value) ?? 0).ToArray(),
    };

    /// <summary>A switch that takes no value.</summary>
    public static Option<bool> Flag(string name, string description) => new(name)
    {
        Description = description,
        Arity = ArgumentArity.Zero,
    };

    private static Option<T> Scalar<T>(string name, string description, string helpName, bool required, Func<ArgumentResult, string, T> parse) => new(name)
    {
        Description = description,
        HelpName = helpName,
        Required = required,
        // One value per occurrence; repeated occurrences are allowed and the last one wins.
        Arity = ArgumentArity.OneOrMore,
        AllowMultipleArgumentsPerToken = false,
        CustomParser = r => r.Tokens.Count == 0 ? default : parse(r, r.Tokens[^1].Value),
    };

    private static int? ParseInt(ArgumentResult r, string name, string s) =>
        int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : Invalid<int?>(r, name, s, "an integer");

    private static T? Invalid<T>(ArgumentResult r, string name, string value, string expected)
    {
        r.AddError($"invalid value '{value}' for {name}: expected {expected}");
        return default;
    }

    private static string Alternatives(IReadOnlyList<string> words) =>
        words.Count == 1 ? words[0] : string.Join(", ", words.Take(words.Count - 1)) + " or " + words[^1];
}
