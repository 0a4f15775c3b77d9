using MiniGpt4.Abstractions;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>
/// The engine drives any <see cref="ILanguageModel"/> through its forward-level members only: a user's model
/// (here a decorator that records its calls around the real one, as a logging or metering wrapper would) gets
/// the reference's answer through the public composition constructor.
/// </summary>
public class ForwardLevelModelTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    private sealed class RecordingModel(ILanguageModel inner) : DelegatingLanguageModel(inner, ownsInner: true)
    {
        public List<string> Calls { get; } = new();

        public override void Prefill(LanguageModelCache cache, PromptSequence prompt, Span<float> logits, CancellationToken cancellationToken = default)
        {
            Calls.Add($"prefill {cache.Length}..{prompt.Length}");
            base.Prefill(cache, prompt, logits, cancellationToken);
        }

        public override void Step(LanguageModelCache cache, ReadOnlySpan<int> tokenPerRow, Span<float> logits)
        {
            Calls.Add($"step {tokenPerRow.Length}");
            base.Step(cache, tokenPerRow, logits);
        }
    }

    [SkippableFact]
    public async Task A_users_language_model_gets_the_reference_answer_through_the_engine()
    {
        var loaded = tiny.Get("vicuna0");
        var model = new RecordingModel(loaded.LanguageModel);
        using var p = new MiniGptPipeline(ModelVariant.MiniGpt4Vicuna0, loaded.VisionEncoder, loaded.Projector, model, ownsComponents: false);
        var r = await p.AskAsync(OracleChat.ImageA, OracleChat.Question, OracleChat.Greedy20);
        Assert.Equal(OracleChat.ReferenceIds(), r.TokenIds);
        // One prefill of the whole prompt, then one step per token but the last (never fed, as in transformers).
        Assert.Equal([$"prefill 0..{r.Usage.PromptTokens}", .. Enumerable.Repeat("step 1", r.TokenIds.Count - 1)], model.Calls);
    }

    [SkippableFact]
    public async Task Raw_generation_through_the_facade_reuses_nothing_and_matches_a_conversation_turn()
    {
        var p = tiny.Get("vicuna0");
        var lm = p.LanguageModel;
        var prompt = new PromptSequence().AddTokens(lm.Tokenize("Hello, how are", addBos: true));
        var ids = new List<int>();
        GenerationUpdate? last = null;
        await foreach (var u in p.GenerateAsync(prompt, GenerationOptions.Greedy with { MaxNewTokens = 8, UseTemplateStops = false }))
        {
            ids.AddRange(u.TokenIds);
            last = u;
        }
        Assert.Equal(8, ids.Count);
        Assert.Equal(MiniGptFinishReason.Length, last!.FinishReason);
        Assert.Equal(0, last.Usage!.ReusedPromptTokens);

        // The same prompt through the model-level extension with a cache: the second call reuses all but the last position.
        using var cache = lm.CreateCache();
        var again = new List<int>();
        await foreach (var u in lm.GenerateAsync(prompt, GenerationOptions.Greedy with { MaxNewTokens = 8 }, cache)) again.AddRange(u.TokenIds);
        MiniGptUsage? usage = null;
        await foreach (var u in lm.GenerateAsync(prompt, GenerationOptions.Greedy with { MaxNewTokens = 8 }, cache)) usage = u.Usage ?? usage;
        Assert.Equal(ids, again);
        Assert.Equal(prompt.Length - 1, usage!.ReusedPromptTokens);
    }
}
