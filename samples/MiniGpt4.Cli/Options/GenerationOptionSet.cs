using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;

namespace MiniGpt4.Cli.Options;

/// <summary>
/// The generation options shared by every verb that answers (generate, chat, and later ones), and the one place
/// that maps them to <see cref="GenerationOptions"/>. An option left out keeps the library's default.
/// </summary>
internal sealed class GenerationOptionSet
{
    private static readonly GenerationOptions Defaults = new();

    public Option<float?> Temperature { get; } = CliOption.Number("--temperature",
        $"Softmax temperature; 0 means greedy decoding [default: {F(Defaults.Temperature)}]", "T");
    public Option<float?> TopP { get; } = CliOption.Number("--top-p",
        $"Nucleus sampling probability mass [default: {F(Defaults.TopP)}]", "P");
    public Option<int?> TopK { get; } = CliOption.Int("--top-k",
        $"Sample from the K most likely tokens, 0 disables [default: {Defaults.TopK}]", "K");
    public Option<float?> RepetitionPenalty { get; } = CliOption.Number("--repetition-penalty",
        $"Hugging Face repetition penalty, 1 disables [default: {F(Defaults.RepetitionPenalty)}]", "R");
    public Option<int?> NumBeams { get; } = CliOption.Int("--num-beams",
        $"Beam search width, 1 = no beam search [default: {Defaults.NumBeams}]");
    public Option<float?> LengthPenalty { get; } = CliOption.Number("--length-penalty",
        $"Beam search length penalty [default: {F(Defaults.LengthPenalty)}]", "L");
    public Option<int?> MaxNewTokens { get; } = CliOption.Int("--max-new-tokens",
        $"Most new tokens [default: {Defaults.MaxNewTokens}]");
    public Option<int?> MinNewTokens { get; } = CliOption.Int("--min-new-tokens",
        $"Fewest new tokens before EOS may stop [default: {Defaults.MinNewTokens}]");
    public Option<long?> Seed { get; } = CliOption.Long("--seed",
        "Random seed for reproducible sampling [default: a fresh seed]", "S");
    public Option<string[]> Stop { get; } = CliOption.TextList("--stop",
        "Stop at this text, which is left out of the answer (repeatable)", "TEXT");
    public Option<int[]> StopTokenId { get; } = CliOption.IntList("--stop-token-id",
        "Stop at this token id (repeatable)", "ID");
    public Option<bool> NoTemplateStops { get; } = CliOption.Flag("--no-template-stops",
        "Drop the variant's template stops (the ### tokens); EOS still stops");

    /// <summary>Every option, in help order.</summary>
    public IReadOnlyList<Option> All =>
    [
        Temperature, TopP, TopK, RepetitionPenalty, NumBeams, LengthPenalty, MaxNewTokens, MinNewTokens,
        Seed, Stop, StopTokenId, NoTemplateStops,
    ];

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var o in All) command.Options.Add(o);
    }

    /// <summary>The generation options the command line asks for.</summary>
    public GenerationOptions Read(ParseResult r) => Apply(new GenerationOptions(), new Overrides(
        r.GetValue(Temperature), r.GetValue(TopP), r.GetValue(TopK), r.GetValue(RepetitionPenalty), r.GetValue(NumBeams),
        r.GetValue(LengthPenalty), r.GetValue(MaxNewTokens), r.GetValue(MinNewTokens), r.GetValue(Seed),
        r.GetValue(Stop) is { Length: > 0 } stop ? stop : null, r.GetValue(StopTokenId) is { Length: > 0 } ids ? ids : null,
        r.GetValue(NoTemplateStops) ? true : null));

    /// <summary>
    /// <paramref name="baseOptions"/> with the options a JSON object names (batch's per-line <c>"options"</c>). The keys are the
    /// command line's option names without the dashes and with <c>_</c> for <c>-</c> (<c>temperature</c>, <c>max_new_tokens</c>,
    /// <c>stop</c>: a string or an array, <c>stop_token_id</c>: a number or an array, <c>no_template_stops</c>: a boolean), with
    /// the same meanings; an unknown key or a value of the wrong type throws <see cref="FormatException"/> naming it.
    /// </summary>
    public GenerationOptions Read(GenerationOptions baseOptions, JsonObject json)
    {
        var known = All.ToDictionary(JsonName, o => o);
        float? temperature = null, topP = null, repetition = null, length = null;
        int? topK = null, beams = null, maxNew = null, minNew = null;
        long? seed = null;
        string[]? stop = null;
        int[]? stopIds = null;
        bool? noTemplateStops = null;
        foreach (var (key, value) in json)
        {
            if (!known.TryGetValue(key, out var option))
                throw new FormatException($"unknown option '{key}' (known: {string.Join(", ", known.Keys)})");
            try
            {
                if (option == Temperature) temperature = value!.GetValue<float>();
                else if (option == TopP) topP = value!.GetValue<float>();
                else if (option == TopK) topK = value!.GetValue<int>();
                else if (option == RepetitionPenalty) repetition = value!.GetValue<float>();
                else if (option == NumBeams) beams = value!.GetValue<int>();
                else if (option == LengthPenalty) length = value!.GetValue<float>();
                else if (option == MaxNewTokens) maxNew = value!.GetValue<int>();
                else if (option == MinNewTokens) minNew = value!.GetValue<int>();
                else if (option == Seed) seed = value!.GetValue<long>();
                else if (option == Stop) stop = value is JsonArray a ? a.Select(v => v!.GetValue<string>()).ToArray() : [value!.GetValue<string>()];
                else if (option == StopTokenId) stopIds = value is JsonArray a ? a.Select(v => v!.GetValue<int>()).ToArray() : [value!.GetValue<int>()];
                else if (option == NoTemplateStops) noTemplateStops = value!.GetValue<bool>();
            }
            catch (Exception ex) when (ex is InvalidOperationException or FormatException or NullReferenceException)
            {
                throw new FormatException($"invalid value {value?.ToJsonString() ?? "null"} for option '{key}'", ex);
            }
        }
        return Apply(baseOptions, new Overrides(temperature, topP, topK, repetition, beams, length, maxNew, minNew, seed, stop, stopIds, noTemplateStops));
    }

    /// <summary>The key of an option in JSON: its name without the dashes, <c>_</c> for <c>-</c>.</summary>
    public static string JsonName(Option option) => option.Name.TrimStart('-').Replace('-', '_');

    /// <summary>What a command line or a JSON object sets; null leaves the base value.</summary>
    private sealed record Overrides(float? Temperature, float? TopP, int? TopK, float? RepetitionPenalty, int? NumBeams, float? LengthPenalty,
        int? MaxNewTokens, int? MinNewTokens, long? Seed, string[]? Stop, int[]? StopTokenIds, bool? NoTemplateStops);

    /// <summary>The one mapping of the options to <see cref="GenerationOptions"/>: temperature 0 means greedy, any other samples.</summary>
    private static GenerationOptions Apply(GenerationOptions o, Overrides v)
    {
        if (v.Temperature is 0f) o = o with { DoSample = false, Temperature = 0f };
        else if (v.Temperature is float t) o = o with { DoSample = true, Temperature = t };
        return o with
        {
            TopP = v.TopP ?? o.TopP,
            TopK = v.TopK ?? o.TopK,
            RepetitionPenalty = v.RepetitionPenalty ?? o.RepetitionPenalty,
            NumBeams = v.NumBeams ?? o.NumBeams,
            LengthPenalty = v.LengthPenalty ?? o.LengthPenalty,
            MaxNewTokens = v.MaxNewTokens ?? o.MaxNewTokens,
            MinNewTokens = v.MinNewTokens ?? o.MinNewTokens,
            Seed = v.Seed ?? o.Seed,
            StopStrings = v.Stop ?? o.StopStrings,
            StopTokenIds = v.StopTokenIds ?? o.StopTokenIds,
            UseTemplateStops = v.NoTemplateStops is bool no ? !no : o.UseTemplateStops,
        };
    }

    private static string F(float v) => v.ToString(CultureInfo.InvariantCulture);
}
