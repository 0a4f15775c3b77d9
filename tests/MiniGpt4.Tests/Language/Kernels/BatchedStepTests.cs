using MiniGpt4.Language;
using MiniGpt4.Language.Kernels;
using Xunit;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language.Kernels;

/// <summary>
/// <see cref="LlamaSession.StepMany"/>, the engine's batched decode step: sessions of different lengths and row counts
/// (a conversation with beams) in one forward, each row's logits bit-identical to its session stepped alone, at 1 and 2 threads.
/// </summary>
public sealed class BatchedStepTests
{
    private static LlamaForCausalLM RandomModel(ScalarType dtype) => CpuDecoderTests.RandomModel(
        new LlamaConfig(HiddenSize: 256, IntermediateSize: 1024, NumHiddenLayers: 2, NumAttentionHeads: 8, NumKeyValueHeads: 4,
            RmsNormEps: 1e-5, RopeTheta: 10000, MaxPositionEmbeddings: 256, VocabSize: 4096, TieWordEmbeddings: false), dtype, seed: 77);

    private static readonly int[][] Prompts = [[1, 2, 3], [1, 50, 60, 70, 80, 90, 100, 110, 120, 130, 140], [1, 9, 8, 7, 6, 5]];
    private static readonly int[] RowsOf = [1, 3, 1]; // the second conversation runs three beams
    private static readonly int[][] Steps = [[11, 12, 13], [400, 401, 402, 403, 404, 405, 406, 407, 408], [7, 77, 777]];

    /// <summary>The conversations' sessions, prefilled at one thread (libtorch's prefill may sum differently at another).</summary>
    private static LlamaSession[] Open(LlamaForCausalLM lm, int[] which)
    {
        set_num_threads(1);
        return which.Select(i =>
        {
            var s = lm.CreateSession(64);
            using (s.PrefillTokens(Prompts[i])) { }
            if (RowsOf[i] > 1) s.ReorderRows(new int[RowsOf[i]]);
            return s;
        }).ToArray();
    }

    [SkippableTheory]
    [InlineData(ScalarType.Float32)]
    [InlineData(ScalarType.BFloat16)]
    public void Each_conversation_gets_its_solo_logits_at_every_step_beside_the_others(ScalarType dtype)
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the decoder needs AVX-512F or AVX2 + FMA");
        using var scope = NewDisposeScope();
        using var lm = RandomModel(dtype);
        var vocab = lm.Config.VocabSize;
        var threadsBefore = get_num_threads();
        try
        {
            // Solo: each conversation alone, one thread, three steps.
            var solo = new List<float[]>[Prompts.Length];
            for (var i = 0; i < Prompts.Length; i++)
            {
                var s = Open(lm, [i])[0];
                solo[i] = [];
                for (var step = 0; step < 3; step++)
                {
                    var logits = new float[RowsOf[i] * vocab];
                    s.Step(Steps[i].AsSpan(step * RowsOf[i], RowsOf[i]), logits);
                    solo[i].Add(logits);
                }
                s.Dispose();
            }
            foreach (var threads in new[] { 1, 2 })
            {
                // All three together (in another order), then the first leaves and the other two go on.
                var sessions = Open(lm, [2, 0, 1]);
                set_num_threads(threads);
                for (var step = 0; step < 3; step++)
                {
                    var order = step == 0 ? new[] { 2, 0, 1 } : [2, 1];
                    var batch = order.Select(i => sessions[Array.IndexOf([2, 0, 1], i)]).ToArray();
                    var tokens = order.SelectMany(i => Steps[i].Skip(step * RowsOf[i]).Take(RowsOf[i])).ToArray();
                    var logits = new float[tokens.Length * vocab];
                    LlamaSession.StepMany(batch, tokens, logits);
                    var at = 0;
                    foreach (var i in order)
                    {
                        var mine = logits.AsSpan(at * vocab, RowsOf[i] * vocab);
                        Assert.True(mine.SequenceEqual(solo[i][step]), $"{dtype}, {threads} threads, step {step}: conversation {i} differs from alone");
                        at += RowsOf[i];
                    }
                    if (step == 0) // conversation 0 is retired: its session goes on alone at the next steps
                    {
                        var s0 = sessions[1];
                        for (var later = 1; later < 3; later++)
                        {
                            var alone = new float[vocab];
                            s0.Step(Steps[0].AsSpan(later, 1), alone);
                            Assert.True(alone.AsSpan().SequenceEqual(solo[0][later]), $"{dtype}: conversation 0 alone after the batch differs");
                        }
                    }
                }
                foreach (var s in sessions) s.Dispose();
            }
        }
        finally { set_num_threads(threadsBefore); }
    }

    [Fact]
    public void A_session_twice_in_one_step_is_refused()
    {
        using var scope = NewDisposeScope();
        using var lm = RandomModel(ScalarType.Float32);
        using var s = lm.CreateSession(16);
        using (s.PrefillTokens([1, 2])) { }
        Assert.Throws<ArgumentException>(() => LlamaSession.StepMany([s, s], [3, 4], new float[2 * lm.Config.VocabSize]));
    }
}
