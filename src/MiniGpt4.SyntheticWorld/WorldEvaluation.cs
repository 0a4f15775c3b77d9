using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniGpt4.SyntheticWorld;

/// <summary>One kind's score: answers judged correct by <see cref="AnswerChecker"/> out of the questions asked.</summary>
/// <param name="Kind">The question kind.</param>
/// <param name="Correct">Answers judged correct.</param>
/// <param name="Total">Questions of this kind in the evaluation file.</param>
/// <param name="Missing">Of <see cref="Total"/>, questions with no answer line or an error line (counted as wrong).</param>
public sealed record KindScore(QuestionKind Kind, int Correct, int Total, int Missing)
{
    /// <summary>The share correct (0 when there were no questions).</summary>
    public double Accuracy => Total == 0 ? 0 : (double)Correct / Total;
}

/// <summary>Scores answers (the CLI batch verb's output) against an evaluation file (<see cref="WorldDataset.EvalFile"/>), per kind.</summary>
public static class WorldEvaluation
{
    /// <summary>
    /// Joins <paramref name="answersJsonl"/> (lines <c>{"id", "text"}</c> or <c>{"id", "error"}</c>) to <paramref name="evalJsonl"/>
    /// by id and judges each answer; a question without an answer, or with an error, is wrong. Returns the four kinds in order.
    /// </summary>
    public static IReadOnlyList<KindScore> Score(IEnumerable<string> evalJsonl, IEnumerable<string> answersJsonl)
    {
        var answers = new Dictionary<string, string?>();
        foreach (var line in answersJsonl.Where(l => !string.IsNullOrWhiteSpace(l)))
        {
            var a = JsonNode.Parse(line)!.AsObject();
            if (a["id"] is JsonValue id && id.GetValueKind() == JsonValueKind.String)
                answers[id.GetValue<string>()] = a["error"] is null ? a["text"]?.GetValue<string>() : null;
        }
        var correct = new int[4];
        var total = new int[4];
        var missing = new int[4];
        foreach (var line in evalJsonl.Where(l => !string.IsNullOrWhiteSpace(l)))
        {
            var e = JsonNode.Parse(line)!.AsObject();
            var kind = WorldDataset.ParseKind(e["kind"]!.GetValue<string>());
            total[(int)kind]++;
            if (!answers.TryGetValue(e["id"]!.GetValue<string>(), out var text) || text is null) missing[(int)kind]++;
            else if (AnswerChecker.IsCorrect(kind, WorldDataset.FactsFromJson(e["facts"]!), text)) correct[(int)kind]++;
        }
        return Enum.GetValues<QuestionKind>().Select(k => new KindScore(k, correct[(int)k], total[(int)k], missing[(int)k])).ToArray();
    }
}
