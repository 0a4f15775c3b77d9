using System.Text.Json;

namespace MiniGpt4.Training;

/// <summary>One message of a stage-2 conversation.</summary>
/// <param name="IsUser">True for the user's question, false for the assistant's answer (the part that is learned).</param>
/// <param name="Text">The message text (the image is not written in it: it goes before the first user message).</param>
public sealed record TrainingMessage(bool IsUser, string Text);

/// <summary>
/// One training example: an image and either a caption (stage 1) or a conversation about it (stage 2), alternating
/// user and assistant messages starting with the user and ending with the assistant.
/// </summary>
public sealed record TrainingExample
{
    /// <summary>Creates a stage-1 example.</summary>
    public TrainingExample(string imagePath, string caption)
    {
        ImagePath = imagePath;
        Caption = caption;
    }

    /// <summary>Creates a stage-2 example.</summary>
    public TrainingExample(string imagePath, IReadOnlyList<TrainingMessage> conversation)
    {
        ImagePath = imagePath;
        Conversation = conversation;
    }

    /// <summary>The image file (absolute, or relative to the current directory).</summary>
    public string ImagePath { get; }

    /// <summary>The caption of a stage-1 example, else null.</summary>
    public string? Caption { get; }

    /// <summary>The conversation of a stage-2 example, else null.</summary>
    public IReadOnlyList<TrainingMessage>? Conversation { get; }
}

/// <summary>
/// Reads training data: JSON lines, one example per line, <c>{"image": path, "text": caption}</c> for stage 1 or
/// <c>{"image": path, "conversation": [{"role": "user", "text": ...}, {"role": "assistant", "text": ...}, ...]}</c> for
/// stage 2 (or LLaVA's spelling of the messages, <c>{"from": "human"|"gpt", "value": ...}</c>, which the synthetic world writes). Image paths are relative to the JSONL file's folder. Blank lines are skipped; anything else that is not one
/// of those forms throws <see cref="MiniGptConfigurationException"/> naming the file and line.
/// </summary>
public static class TrainingData
{
    /// <summary>Reads <paramref name="jsonlPath"/> for <paramref name="stage"/>.</summary>
    public static IReadOnlyList<TrainingExample> ReadJsonl(string jsonlPath, TrainingStage stage)
    {
        ArgumentNullException.ThrowIfNull(jsonlPath);
        if (!File.Exists(jsonlPath)) throw new MiniGptConfigurationException($"Training data '{jsonlPath}' does not exist.");
        var folder = Path.GetDirectoryName(Path.GetFullPath(jsonlPath))!;
        var examples = new List<TrainingExample>();
        var lineNumber = 0;
        foreach (var line in File.ReadLines(jsonlPath))
        {
            lineNumber++;
            if (string.IsNullOrWhiteSpace(line)) continue;
            var where = $"{jsonlPath}:{lineNumber}";
            try
            {
                examples.Add(Parse(line, folder, stage, where));
            }
            catch (JsonException ex)
            {
                throw new MiniGptConfigurationException($"{where}: not a JSON object ({ex.Message}).", ex);
            }
        }
        if (examples.Count == 0) throw new MiniGptConfigurationException($"Training data '{jsonlPath}' holds no examples.");
        return examples;
    }

    private static TrainingExample Parse(string line, string folder, TrainingStage stage, string where)
    {
        using var doc = JsonDocument.Parse(line, new JsonDocumentOptions { MaxDepth = 8 });
        var root = doc.RootElement;
        if (root.ValueKind != JsonValueKind.Object) throw new MiniGptConfigurationException($"{where}: each line must be a JSON object.");
        var image = String(root, "image", where);
        var path = Path.GetFullPath(Path.IsPathRooted(image) ? image : Path.Combine(folder, image));
        if (!File.Exists(path)) throw new MiniGptConfigurationException($"{where}: image '{path}' does not exist.");
        if (stage == TrainingStage.Stage1)
            return new TrainingExample(path, String(root, "text", where));

        if (!root.TryGetProperty("conversation", out var conv) || conv.ValueKind != JsonValueKind.Array || conv.GetArrayLength() == 0)
            throw new MiniGptConfigurationException($"{where}: a stage-2 line needs a non-empty 'conversation' array.");
        var messages = new List<TrainingMessage>();
        foreach (var m in conv.EnumerateArray())
        {
            if (m.ValueKind != JsonValueKind.Object) throw new MiniGptConfigurationException($"{where}: each conversation message must be an object.");
            // Two spellings: {"role": "user"|"assistant", "text"} and LLaVA's {"from": "human"|"gpt", "value"}.
            var llava = m.TryGetProperty("from", out _);
            var role = String(m, llava ? "from" : "role", where);
            var isUser = (llava, role) switch
            {
                (false, "user") or (true, "human") => true,
                (false, "assistant") or (true, "gpt") => false,
                (false, _) => throw new MiniGptConfigurationException($"{where}: role '{role}' is neither 'user' nor 'assistant'."),
                (true, _) => throw new MiniGptConfigurationException($"{where}: 'from' '{role}' is neither 'human' nor 'gpt'."),
            };
            if (isUser != (messages.Count % 2 == 0))
                throw new MiniGptConfigurationException($"{where}: the conversation must alternate user and assistant messages, starting with the user.");
            messages.Add(new TrainingMessage(isUser, String(m, llava ? "value" : "text", where)));
        }
        if (messages[^1].IsUser) throw new MiniGptConfigurationException($"{where}: the conversation must end with an assistant message.");
        return new TrainingExample(path, messages);
    }

    private static string String(JsonElement e, string name, string where) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } s
            ? s
            : throw new MiniGptConfigurationException($"{where}: '{name}' must be a non-empty string.");
}
