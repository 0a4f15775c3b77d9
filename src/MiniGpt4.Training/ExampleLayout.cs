using MiniGpt4.Abstractions;
using MiniGpt4.Prompting;

namespace MiniGpt4.Training;

/// <summary>A run of token ids in a training sequence; <paramref name="IsTarget"/>: the model is trained to predict them.</summary>
internal sealed record TokenRun(IReadOnlyList<int> Ids, bool IsTarget);

/// <summary>
/// An example laid out as the language model sees it: token runs with the image's embeddings between
/// <see cref="BeforeImage"/> and <see cref="AfterImage"/>.
/// </summary>
internal sealed record ExampleSequence(IReadOnlyList<int> BeforeImage, IReadOnlyList<TokenRun> AfterImage)
{
    /// <summary>Positions with <paramref name="imageTokens"/> image embeddings.</summary>
    public int Length(int imageTokens) => BeforeImage.Count + imageTokens + AfterImage.Sum(r => r.Ids.Count);

    /// <summary>The target ids (what the loss is taken over).</summary>
    public int TargetTokens => AfterImage.Where(r => r.IsTarget).Sum(r => r.Ids.Count);
}

/// <summary>
/// Lays examples out the way the reference trains (<c>MiniGPTBase.forward</c>, docs/training.md) with the prompt the
/// engine builds at inference: stage 1 is BOS, the image, then the caption and <c>"\n"</c> (the reference's default
/// <c>end_sym</c>; no prompt text, as the stage-1 config has no <c>prompt_path</c>); stage 2 renders the conversation with
/// the variant's template exactly as <see cref="PromptBuilder"/> does (system text, <c>&lt;Img&gt;&lt;ImageHere&gt;&lt;/Img&gt;</c>
/// as the first user message joined to the question, BOS on the first segment only), each answer followed by the
/// stage-2 <c>end_sym</c> and tokenized on its own as the target, as the reference tokenizes <c>answer + end_sym</c>.
/// At most <paramref name="maxTextTokens"/> tokens follow the first prompt (the reference's <c>max_txt_len</c>).
/// </summary>
internal sealed class ExampleLayout(ModelPreset preset, ILanguageModel languageModel, TrainingStage stage, int maxTextTokens)
{
    /// <summary>Stage 1's end symbol (the reference's default <c>end_sym</c>).</summary>
    public const string Stage1EndSymbol = "\n";

    /// <summary>The stage-2 <c>end_sym</c> of the variant's reference config: <c>###</c> for Vicuna v0, <c>&lt;/s&gt;</c> for the Llama-2 family.</summary>
    public static string Stage2EndSymbol(ModelVariant variant) => variant == ModelVariant.MiniGpt4Vicuna0 ? "###" : "</s>";

    public string EndSymbol => stage == TrainingStage.Stage1 ? Stage1EndSymbol : Stage2EndSymbol(preset.Variant);

    public ExampleSequence Build(TrainingExample example)
    {
        if (stage == TrainingStage.Stage1)
        {
            var caption = example.Caption ?? throw new MiniGptConfigurationException($"The stage-1 example for '{example.ImagePath}' has no caption.");
            return new ExampleSequence(languageModel.Tokenize("", addBos: true), Truncate([Target(caption)]));
        }
        var messages = example.Conversation ?? throw new MiniGptConfigurationException($"The stage-2 example for '{example.ImagePath}' has no conversation.");
        var template = preset.Template;
        var conversation = new Conversation();
        conversation.AddImage();
        conversation.Ask(messages[0].Text);
        var prompt = template.Render(conversation.Messages, out var imageOffsets);
        var segments = ConversationTemplate.SplitAtImages(prompt, imageOffsets);
        var runs = new List<TokenRun> { new(languageModel.Tokenize(segments[1], addBos: false), false) };
        for (var i = 1; i < messages.Count; i++)
        {
            var m = messages[i];
            if (!m.IsUser)
            {
                runs.Add(Target(m.Text));
                conversation.AddAnswer(m.Text);
                continue;
            }
            var before = template.Render(conversation.Messages, out _).Length - template.AssistantRole.Length;
            conversation.Ask(m.Text);
            runs.Add(new TokenRun(languageModel.Tokenize(template.Render(conversation.Messages, out _)[before..], addBos: false), false));
        }
        // The first run is the prompt's tail (after the image): the text limit counts what follows it.
        return new ExampleSequence(languageModel.Tokenize(segments[0], addBos: true), [runs[0], .. Truncate(runs.Skip(1))]);
    }

    private TokenRun Target(string answer) => new(languageModel.Tokenize(answer + EndSymbol, addBos: false), true);

    private List<TokenRun> Truncate(IEnumerable<TokenRun> runs)
    {
        var kept = new List<TokenRun>();
        var left = maxTextTokens;
        foreach (var run in runs)
        {
            if (left <= 0) break;
            kept.Add(run.Ids.Count <= left ? run : run with { Ids = run.Ids.Take(left).ToArray() });
            left -= run.Ids.Count;
        }
        return kept;
    }
}
