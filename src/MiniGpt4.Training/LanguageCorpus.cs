using MiniGpt4.Abstractions;
using MiniGpt4.Models;
using MiniGpt4.SyntheticWorld;

namespace MiniGpt4.Training;

/// <summary>A token sequence of the language corpus: ids, which of them are targets, and where the image slot is.</summary>
/// <param name="Ids">BOS, the prompt before the image, the 32 code-word ids, the rest.</param>
/// <param name="IsTarget">Per id: whether the model learns to predict it (the caption or answer and its end symbol).</param>
/// <param name="ImageStart">The first position of the image slot.</param>
internal sealed record CorpusSequence(int[] Ids, bool[] IsTarget, int ImageStart);

/// <summary>
/// The toy language model's training text, generated from the synthetic world: each sequence is laid out by the
/// projection trainer's own <see cref="ExampleLayout"/> (so exactly as projection training and the engine's prompt
/// builder lay it out) with the scene's 32 <see cref="SceneCode"/> word tokens where the 32 image embeddings will
/// stand: stage 1 <c>BOS code caption\n</c>, stage 2 the vicuna0 prompt with its system text,
/// <c>###Human: &lt;Img&gt;code&lt;/Img&gt; question###Assistant: answer###</c>. <see cref="Conversation"/> lays out
/// several questions about one scene as the projection trainer lays out a multi-turn conversation.
/// </summary>
internal sealed class LanguageCorpus
{
    private const long QuestionStream = 0x4C4C_4D43_4F52L;
    private readonly ExampleLayout _stage1, _stage2;
    private readonly Dictionary<string, int> _codeIds = new(StringComparer.Ordinal);
    private readonly Dictionary<int, (int Colour, int Shape)> _parts = new();
    private readonly long _worldSeed;
    private readonly double _captionShare;

    public LanguageCorpus(ILanguageModel languageModel, long worldSeed, double captionShare)
    {
        var preset = ModelPreset.For(ModelVariant.MiniGpt4Vicuna0);
        _stage1 = new ExampleLayout(preset, languageModel, TrainingStage.Stage1, 64);
        _stage2 = new ExampleLayout(preset, languageModel, TrainingStage.Stage2, 160);
        _worldSeed = worldSeed;
        _captionShare = captionShare;
        int Single(string word)
        {
            var ids = languageModel.Tokenize(word, addBos: false);
            return ids.Count == 1 ? ids[0]
                : throw new MiniGptConfigurationException($"The word '{word}' is {ids.Count} tokens of this tokenizer; the toy language model needs one.");
        }
        foreach (var word in SceneCode.Vocabulary) _codeIds[word] = Single(word);
        foreach (var (colour, shape) in SceneCode.Combos)
        {
            _parts[_codeIds[SceneCode.ComboWord(colour, shape)]] = (Single(Palette.Word(colour)), Single(Palette.Word(shape)));
            _parts[_codeIds[SceneCode.ComboPluralWord(colour, shape)]] = (Single(Palette.Word(colour)), Single(Palette.Plural(shape)));
        }
    }

    /// <summary>
    /// The colour word's and shape word's token ids of each combination code word's token id (<c>▁redcircles</c>:
    /// <c>▁red</c>, <c>▁circles</c>). Pretraining composes a combination's embedding as its own row plus these two rows,
    /// so that it starts out meaning what its words mean; the saved model has the sum in the combination's row.
    /// </summary>
    public IReadOnlyDictionary<int, (int Colour, int Shape)> CodeWordParts => _parts;

    /// <summary>The token id of each code word, in <see cref="SceneCode.Vocabulary"/> order.</summary>
    public IReadOnlyList<int> CodeWordIds => SceneCode.Vocabulary.Select(w => _codeIds[w]).ToArray();

    /// <summary>
    /// Training sequence <paramref name="index"/>: scene <paramref name="index"/> of the world seed, with its caption, or a
    /// conversation of up to <see cref="QuestionsPerConversation"/> of the questions the scene allows, in a random order
    /// (several answers a sequence: each colour and shape answer is a lookup the model learns from many examples).
    /// </summary>
    public CorpusSequence Item(long index)
    {
        var scene = SceneGenerator.Generate(_worldSeed, index);
        var random = WorldRandom.ForItem(_worldSeed ^ QuestionStream, index);
        if (random.NextDouble() < _captionShare) return Caption(scene);
        var questions = QuestionGenerator.All(scene).ToArray();
        for (var i = questions.Length - 1; i > 0; i--)
        {
            var j = random.Next(0, i);
            (questions[i], questions[j]) = (questions[j], questions[i]);
        }
        return Conversation(scene, questions.Take(QuestionsPerConversation).ToArray());
    }

    /// <summary>The most questions in one training conversation.</summary>
    public const int QuestionsPerConversation = 3;

    /// <summary>The stage-1 sequence of a scene.</summary>
    public CorpusSequence Caption(Scene scene) =>
        Lay(scene, _stage1.Build(new TrainingExample("scene", QuestionGenerator.Caption(scene))));

    /// <summary>The stage-2 sequence of a scene and a question, answer included.</summary>
    public CorpusSequence Question(Scene scene, WorldQuestion question) => Conversation(scene, [question]);

    /// <summary>The stage-2 sequence of a conversation of questions about a scene, every answer a target.</summary>
    public CorpusSequence Conversation(Scene scene, IReadOnlyList<WorldQuestion> questions) =>
        Lay(scene, _stage2.Build(new TrainingExample("scene",
            questions.SelectMany(q => new[] { new TrainingMessage(true, q.Question), new TrainingMessage(false, q.Answer) }).ToArray())));

    /// <summary>The inference prompt of a question (everything before the answer), as the engine feeds it with the code words for the image.</summary>
    public int[] Prompt(Scene scene, WorldQuestion question)
    {
        var s = Question(scene, question);
        var answerStart = Array.IndexOf(s.IsTarget, true);
        return s.Ids[..answerStart];
    }

    private CorpusSequence Lay(Scene scene, ExampleSequence layout)
    {
        var ids = new List<int>(layout.BeforeImage);
        var target = new List<bool>(layout.BeforeImage.Select(_ => false));
        var imageStart = ids.Count;
        foreach (var word in SceneCode.Words(scene))
        {
            ids.Add(_codeIds[word]);
            target.Add(false);
        }
        foreach (var run in layout.AfterImage)
        {
            ids.AddRange(run.Ids);
            target.AddRange(run.Ids.Select(_ => run.IsTarget));
        }
        return new CorpusSequence(ids.ToArray(), target.ToArray(), imageStart);
    }
}
