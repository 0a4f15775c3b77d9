using MiniGpt4.Abstractions;
using MiniGpt4.Language;
using MiniGpt4.Models;
using MiniGpt4.Prompting;
using MiniGpt4.SyntheticWorld;
using MiniGpt4.Tests.Support;
using MiniGpt4.Text;
using MiniGpt4.Training;
using Xunit;

namespace MiniGpt4.Tests.Training;

/// <summary>
/// The toy language model's side: the tokenizer the project builds (read by the engine and by Microsoft.ML.Tokenizers,
/// round trips, one token per word and per code word), the pretraining corpus (the engine's own prompt with the code
/// words in the image slot), and a short pretraining run (loss going down, the folder loading through the engine's
/// loader, a resumed run equal to an uninterrupted one).
/// </summary>
public class LanguagePretrainingTests
{
    private static LlamaTextTokenizer Tokenizer(TempDir dir)
    {
        var path = dir.File(ToyTokenizer.FileName);
        ToyTokenizer.Write(path);
        return LlamaTextTokenizer.FromFile(path, padToken: "$$");
    }

    [Fact]
    public void The_tokenizer_round_trips_its_corpus_and_keeps_every_word_one_piece()
    {
        using var dir = new TempDir();
        var tok = Tokenizer(dir);
        var corpus = ToyTokenizer.Corpus();
        Assert.InRange(tok.VocabSize, 300, 1000);
        foreach (var text in corpus)
        {
            var ids = tok.Encode(text, addBos: false);
            Assert.DoesNotContain(tok.UnkId, ids);
            Assert.Equal(text, tok.Decode(ids));
        }
        foreach (var word in ToyTokenizer.Words(corpus))
        {
            // A word with its space is a text of its own (the dummy prefix gives the space); others are glued to what precedes.
            var ids = word[0] == SentencePieceModel.SpaceSymbol
                ? tok.Encode(word[1..].Replace(SentencePieceModel.SpaceSymbol, ' '), addBos: false)
                : tok.EncodeContinuation(word);
            Assert.Equal([word], ids.Select(tok.IdToPiece));
        }
        // Text outside the world still encodes, through the byte pieces.
        Assert.Equal("Ünïcode 42 ✓", tok.Decode(tok.Encode("Ünïcode 42 ✓", addBos: false)));
    }

    [Fact]
    public void Scene_code_words_are_single_tokens_with_the_leading_space()
    {
        using var dir = new TempDir();
        var tok = Tokenizer(dir);
        foreach (var word in SceneCode.Vocabulary)
            Assert.Equal(["\u2581" + word], tok.Encode(word, addBos: false).Select(tok.IdToPiece));
        Assert.Equal(SceneCode.Vocabulary.Count, LanguagePretrainer.CodeWordTokenIds(dir.Path).Distinct().Count());
    }

    [Fact]
    public void The_vicuna0_prompt_is_made_of_the_template_pieces()
    {
        using var dir = new TempDir();
        var tok = Tokenizer(dir);
        Assert.Equal(["\u2581</Img>", "\u2581What", "\u2581colour", "\u2581is", "\u2581the", "\u2581circle", "?", "###", "Assistant", ":", "\u2581"],
            tok.Encode("</Img> What colour is the circle?###Assistant: ", addBos: false).Select(tok.IdToPiece));
        Assert.Equal(["<s>", "\u2581Give"], tok.Encode("Give", addBos: true).Select(tok.IdToPiece));
        Assert.Equal(["\u2581questions", ".", "###", "Human", ":", "\u2581<Img>"], tok.Encode("questions.###Human: <Img>", addBos: false).Select(tok.IdToPiece));
        Assert.Equal(["\u2581The", "\u2581circle", "\u2581is", "\u2581red", ".", "###"], tok.Encode("The circle is red.###", addBos: false).Select(tok.IdToPiece));
        Assert.Equal(["<0x0A>"], tok.Encode("background.\n", addBos: false).Select(tok.IdToPiece).TakeLast(1));
        // The engine's stop rule finds the separator's spellings in this vocabulary: "▁###" and "###".
        Assert.Equal([["\u2581###"], ["###"]], SeparatorStops.For(tok).Select(s => s.Select(tok.IdToPiece).ToArray()));
    }

    [Fact]
    public void Microsoft_ML_Tokenizers_reads_the_model_and_encodes_the_corpus_alike()
    {
        using var dir = new TempDir();
        var tok = Tokenizer(dir);
        using var stream = File.OpenRead(dir.File(ToyTokenizer.FileName));
        var ml = Microsoft.ML.Tokenizers.LlamaTokenizer.Create(stream);
        Assert.Equal(tok.VocabSize, ml.Vocabulary.Count);
        foreach (var (piece, id) in ml.Vocabulary) Assert.Equal(piece, tok.IdToPiece(id));
        Assert.Equal((ml.BeginningOfSentenceId, ml.EndOfSentenceId, ml.UnknownId), (tok.BosId, tok.EosId, tok.UnkId));
        foreach (var text in ToyTokenizer.Corpus())
            Assert.Equal(tok.Encode(text, addBos: false), ml.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false));
    }

    [Fact]
    public void Corpus_prompts_are_the_engines_prompts_with_the_code_words_in_the_image_slot()
    {
        using var dir = new TempDir();
        var tok = Tokenizer(dir);
        // A language model for its tokenizer only (weights never read).
        var config = new LlamaConfig(8, 16, 1, 2, 2, 1e-6, 10000, 2048, tok.VocabSize, false);
        using var lm = new LlamaLanguageModel(new LlamaForCausalLM(config, TorchSharp.torch.ScalarType.Float32, TorchSharp.torch.CPU), tok, 2048);
        var corpus = new LanguageCorpus(lm, worldSeed: 5, captionShare: 0.5);
        var prompts = new PromptBuilder(ConversationTemplate.Vicuna0, lm, () => []);
        for (var i = 0; i < 20; i++)
        {
            var scene = SceneGenerator.Generate(5, i);
            var code = SceneCode.Words(scene).Select(w => tok.Encode(w, addBos: false).Single()).ToArray();
            foreach (var q in QuestionGenerator.All(scene))
            {
                var conversation = new Conversation();
                conversation.AddImage();
                conversation.Ask(q.Question);
                using var img = ImageEmbeddings.FromArray(new float[32 * 8], 32, 8);
                var turn = prompts.Build(conversation, [img], new GenerationOptions());
                Assert.Equal([.. turn.SegmentIds[0], .. code, .. turn.SegmentIds[1]], corpus.Prompt(scene, q));
                var full = corpus.Question(scene, q);
                Assert.Equal(tok.Encode(q.Answer + "###", addBos: false), full.Ids.Where((_, k) => full.IsTarget[k]));
                Assert.Equal(turn.SegmentIds[0].Count, full.ImageStart);
            }
            var caption = corpus.Caption(scene);
            Assert.Equal([tok.BosId, .. code, .. tok.Encode(QuestionGenerator.Caption(scene) + "\n", addBos: false)], caption.Ids);
            Assert.Equal(1 + SceneCode.Length, Array.IndexOf(caption.IsTarget, true));
        }
    }

    private static readonly LanguagePretrainingOptions Short = new()
    {
        Steps = 12, BatchSize = 4, HiddenSize = 32, IntermediateSize = 64, Layers = 2, Heads = 2, LearningRate = 3e-3, WarmupSteps = 2,
        CheckpointEvery = 6, Threads = 1,
    };

    [Fact]
    public async Task A_short_run_lowers_the_loss_and_writes_a_folder_the_engine_loads()
    {
        using var dir = new TempDir();
        var losses = new List<double>();
        var result = await LanguagePretrainer.TrainAsync(dir.Path, Short, new Progress(p => losses.Add(p.Loss)));
        Assert.Equal(Short.Steps, losses.Count);
        Assert.True(losses.TakeLast(3).Average() < losses.Take(3).Average(), $"losses {string.Join(", ", losses)}");
        Assert.Equal(Short.Steps, result.Steps);
        // A finished folder holds the model only (the resumable state is gone).
        Assert.Equal(new[] { "config.json", "model.safetensors", "tokenizer.model" },
            Directory.GetFiles(dir.Path).Select(f => System.IO.Path.GetFileName(f)).Order(StringComparer.Ordinal).ToArray());
        var manifest = ModelManifest.Load(dir.Path);
        Assert.True(manifest.IsLanguageModelOnly);
        var parts = ModelLoader.Load(manifest, new MiniGptLoadOptions { DType = MiniGptDType.Float32 }, null, CancellationToken.None);
        using var lm = parts.LanguageModel;
        Assert.Equal((32, 2), (lm.Model.Config.HiddenSize, lm.Model.Config.NumHiddenLayers));
        Assert.Equal(ToyTokenizer.Pieces(ToyTokenizer.Corpus()).Count, lm.VocabSize);
        // The evaluation path answers through the engine's session (whatever a 12-step model says).
        var scores = LanguagePretrainer.Evaluate(lm, LanguagePretrainer.HeldOutWorldSeed, 2, null, CancellationToken.None);
        Assert.True(scores[QuestionKind.Count].Total == 2);
    }

    [Fact]
    public async Task A_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_one()
    {
        using var whole = new TempDir();
        using var split = new TempDir();
        await LanguagePretrainer.TrainAsync(whole.Path, Short);
        using var cts = new CancellationTokenSource();
        var stopAt = Short.CheckpointEvery;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            LanguagePretrainer.TrainAsync(split.Path, Short, resume: false, new Progress(p => { if (p.Step == stopAt) cts.Cancel(); }), cts.Token));
        await LanguagePretrainer.TrainAsync(split.Path, Short, resume: true);
        Assert.Equal(File.ReadAllBytes(whole.File(LanguagePretrainer.WeightsFileName)), File.ReadAllBytes(split.File(LanguagePretrainer.WeightsFileName)));
    }

    private sealed class Progress(Action<TrainingProgress> report) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value) => report(value);
    }
}
