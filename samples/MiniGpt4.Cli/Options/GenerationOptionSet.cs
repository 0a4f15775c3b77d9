using System.CommandLine;
using System.Globalization;

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
    public GenerationOptions Read(ParseResult r)
    {
        var o = new GenerationOptions();
        var t = r.GetValue(Temperature);
        if (t is 0f) o = o with { DoSample = false, Temperature = 0f };
        else if (t is float tt) o = o with { Temperature = tt };
        return o with
        {
            TopP = r.GetValue(TopP) ?? o.TopP,
            TopK = r.GetValue(TopK) ?? o.TopK,
            RepetitionPenalty = r.GetValue(RepetitionPenalty) ?? o.RepetitionPenalty,
            NumBeams = r.GetValue(NumBeams) ?? o.NumBeams,
            LengthPenalty = r.GetValue(LengthPenalty) ?? o.LengthPenalty,
            MaxNewTokens = r.GetValue(MaxNewTokens) ?? o.MaxNewTokens,
            MinNewTokens = r.GetValue(MinNewTokens) ?? o.MinNewTokens,
            Seed = r.GetValue(Seed),
            StopStrings = r.GetValue(Stop) ?? [],
            StopTokenIds = r.GetValue(StopTokenId) ?? [],
            UseTemplateStops = !r.GetValue(NoTemplateStops),
        };
    }

    private static string F(float v) => v.ToString(CultureInfo.InvariantCulture);
}
