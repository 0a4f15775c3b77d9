using MiniGpt4.Language;
using MiniGpt4.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language;

/// <summary>KV-cache behaviour: chunked prefill, truncation, row reordering, capacity, leaks.</summary>
public sealed class LlamaSessionTests
{
    public LlamaSessionTests() => set_num_threads(1);

    // The tiny oracle model (multi-head) and stories260K (grouped-query, tied head).
    public static TheoryData<string> Models => new() { LlamaFixtures.TinyFolder, LlamaFixtures.StoriesFolder };

    // Realistic inputs: the embeddings of random token ids.
    private static Tensor RandomEmbeds(LlamaForCausalLM lm, long rows, long t, int seed)
    {
        using var g = new Generator((ulong)seed);
        using var ids = randint(3, lm.Config.VocabSize, [rows, t], generator: g, dtype: ScalarType.Int64);
        return lm.EmbedTokens(ids);
    }

    /// <summary>max |actual - expected| within the fp32 noise bound of <paramref name="scale"/> (default: <paramref name="expected"/>).</summary>
    private static void AssertWithinFp32Noise(Tensor actual, Tensor expected, string what, Tensor? scale = null)
    {
        var diff = Oracle.MaxAbsDiff(actual, expected);
        Assert.True(diff <= LlamaFixtures.Fp32Tolerance(scale ?? expected), $"{what}: max abs diff {diff}");
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void Chunked_prefill_equals_one_pass(string folder)
    {
        using var temporaries = NewDisposeScope();
        ChunkedVersusOnePass(folder, ScalarType.Float32);
        // In float64 the only difference left is summation order: any mask or position error would show.
        ChunkedVersusOnePass(folder, ScalarType.Float64);
    }

    private static void ChunkedVersusOnePass(string folder, ScalarType dtype)
    {
        using var lm = LlamaFixtures.Load(folder, dtype: dtype);
        using var embeds = RandomEmbeds(lm, 2, 23, seed: 1);

        using var one = lm.CreateSession(32, rows: 2);
        using var expected = one.ForwardAllLogits(embeds);

        foreach (var cuts in new[] { new[] { 0, 10, 23 }, new[] { 0, 1, 9, 23 }, new[] { 0, 22, 23 } })
        {
            using var chunked = lm.CreateSession(32, rows: 2);
            var parts = new List<Tensor>();
            for (var i = 0; i + 1 < cuts.Length; i++)
                parts.Add(chunked.ForwardAllLogits(embeds.narrow(1, cuts[i], cuts[i + 1] - cuts[i])));
            using var actual = cat(parts.ToArray(), 1);
            foreach (var p in parts) p.Dispose();
            Assert.Equal(23, chunked.Length);
            var diff = Oracle.MaxAbsDiff(actual, expected);
            var tolerance = dtype == ScalarType.Float64 ? 1e-10 : LlamaFixtures.Fp32Tolerance(expected);
            Console.WriteLine($"{folder} {dtype} chunks {string.Join(",", cuts)}: max abs diff {diff} (tolerance {tolerance})");
            Assert.True(diff <= tolerance, $"chunks {string.Join(",", cuts)}: max abs diff {diff}");
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void Prefill_returns_the_last_position_of_the_full_logits(string folder)
    {
        using var temporaries = NewDisposeScope();
        using var lm = LlamaFixtures.Load(folder);
        using var embeds = RandomEmbeds(lm, 1, 7, seed: 2);
        using var a = lm.CreateSession(8);
        using var b = lm.CreateSession(8);
        using var all = a.ForwardAllLogits(embeds);
        using var last = b.Prefill(embeds[0]); // [T, H] input is broadcast to every row
        Assert.Equal([1L, lm.Config.VocabSize], last.shape);
        Assert.Equal(ScalarType.Float32, last.dtype);
        AssertWithinFp32Noise(last[0], all[0][6], "last-position logits vs all logits", scale: all);
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void Truncate_then_prefill_equals_a_fresh_session(string folder)
    {
        using var temporaries = NewDisposeScope();
        using var lm = LlamaFixtures.Load(folder);
        using var prefix = RandomEmbeds(lm, 1, 9, seed: 3);
        using var turn1 = RandomEmbeds(lm, 1, 6, seed: 4);
        using var turn2 = RandomEmbeds(lm, 1, 8, seed: 5);

        using var session = lm.CreateSession(40);
        (session.Prefill(prefix)).Dispose();
        (session.Prefill(turn1)).Dispose();
        session.Step([5]).Dispose();
        session.Step([7]).Dispose();
        session.Truncate(9);
        Assert.Equal(9, session.Length);
        using var reused = session.ForwardAllLogits(turn2);

        using var fresh = lm.CreateSession(40);
        using var both = cat([prefix, turn2], 1);
        using var all = fresh.ForwardAllLogits(both);
        using var expected = all.narrow(1, 9, 8);
        AssertWithinFp32Noise(reused, expected, "truncate + re-prefill vs fresh");
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void Reordered_rows_give_the_logits_of_separate_sessions(string folder)
    {
        using var temporaries = NewDisposeScope();
        using var lm = LlamaFixtures.Load(folder);
        using var prompts = RandomEmbeds(lm, 2, 5, seed: 6);
        int[] next0 = [11, 12], next1 = [21, 22, 23];

        // Reference: each prompt alone, then its own continuation.
        Tensor Alone(int row, int[] tokens)
        {
            using var s = lm.CreateSession(16);
            s.Prefill(prompts.narrow(0, row, 1)).Dispose();
            s.Step([tokens[0]]).Dispose();
            return s.Step([tokens[1]]);
        }
        using var alone0 = Alone(0, next0);
        using var alone1 = Alone(1, next1);

        using var batch = lm.CreateSession(16, rows: 2);
        batch.Prefill(prompts).Dispose();
        // Same count: permute. Then grow 2 -> 3 rows (row 1 duplicated) and shrink back.
        batch.ReorderRows([1, 0]);
        batch.Step([next1[0], next0[0]]).Dispose();
        batch.ReorderRows([0, 1, 0]);
        Assert.Equal(3, batch.Rows);
        using var three = batch.Step([next1[1], next0[1], next1[1]]);
        AssertWithinFp32Noise(three[0], alone1[0], "row 0 vs prompt 1 alone", scale: alone1);
        AssertWithinFp32Noise(three[1], alone0[0], "row 1 vs prompt 0 alone", scale: alone0);
        AssertWithinFp32Noise(three[2], alone1[0], "row 2 vs prompt 1 alone", scale: alone1);

        batch.ReorderRows([1]);
        Assert.Equal(1, batch.Rows);
        Assert.Equal(7, batch.Length);
        Assert.Throws<ArgumentOutOfRangeException>(() => batch.ReorderRows([1]));
    }

    [SkippableFact]
    public void Overflow_and_bad_input_throw_typed_exceptions()
    {
        using var temporaries = NewDisposeScope();
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        using var session = lm.CreateSession(4);
        session.PrefillTokens([1, 2, 3]).Dispose();
        var ex = Assert.Throws<MiniGptContextLengthException>(() => session.PrefillTokens([4, 5]));
        Assert.Contains("3 cached + 2 new", ex.Message);
        Assert.Equal(4, ex.ContextLength);
        Assert.IsAssignableFrom<MiniGptException>(ex);
        Assert.Equal(3, session.Length); // nothing was written
        session.Step([4]).Dispose();
        Assert.Throws<MiniGptContextLengthException>(() => session.Step([4]));

        using var other = lm.CreateSession(8);
        Assert.Throws<ArgumentOutOfRangeException>(() => other.PrefillTokens([lm.Config.VocabSize]));
        Assert.Throws<ArgumentOutOfRangeException>(() => other.PrefillTokens([-1]));
        Assert.Throws<ArgumentException>(() => other.Step([1, 2]));
        using var wrong = zeros(1, 3, 5);
        Assert.Throws<ArgumentException>(() => other.Prefill(wrong));
        Assert.Throws<ArgumentOutOfRangeException>(() => other.Truncate(1));
        using var ints = zeros([1, 3, lm.Config.HiddenSize], ScalarType.Int64);
        Assert.Throws<ArgumentException>(() => other.Prefill(ints));
        Assert.Equal(0, other.Length);
        other.Dispose();
        Assert.Throws<ObjectDisposedException>(() => other.Step([1]));
        Assert.Throws<ObjectDisposedException>(() => other.PrefillTokens([1]));
    }

    [SkippableTheory]
    [MemberData(nameof(Models))]
    public void Decode_steps_leave_no_live_tensors_behind(string folder)
    {
        using var lm = LlamaFixtures.Load(folder);
        using var embeds = RandomEmbeds(lm, 1, 6, seed: 7);
        using var prompt = embeds[0];
        GC.Collect();
        GC.WaitForPendingFinalizers(); // leaked tensors of other tests must not be finalized mid-count
        var baseline = Tensor.TotalCount;
        var stats = TorchSharp.DisposeScopeManager.Statistics;
        stats.Reset();
        using (var session = lm.CreateSession(64, rows: 2))
        {
            var withCache = Tensor.TotalCount;
            Assert.Equal(baseline + 2 * lm.Config.NumHiddenLayers, withCache); // keys + values per layer
            session.Prefill(prompt).Dispose();
            for (var i = 0; i < 20; i++)
            {
                int[] tokens = session.Rows == 2 ? [3 + i, 4 + i] : [3 + i, 4 + i, 5 + i];
                using var logits = session.Step(tokens);
                if (i == 10) session.ReorderRows([1, 1]);
                if (i == 12) session.ReorderRows([0, 1, 1]);
                if (i == 14) session.ReorderRows([2, 0]);
            }
            Assert.Equal(withCache, Tensor.TotalCount);
            Assert.Equal(2 * lm.Config.NumHiddenLayers, stats.ThreadTotalLiveCount);
        }
        Assert.Equal(baseline, Tensor.TotalCount);
    }

    [SkippableFact]
    public void Half_precision_runs_close_to_float32()
    {
        using var temporaries = NewDisposeScope();
        using var lm32 = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        using var embeds = RandomEmbeds(lm32, 1, 12, seed: 8);
        using var s32 = lm32.CreateSession(16);
        using var expected = s32.ForwardAllLogits(embeds);
        using var scaleT = expected.abs().max();
        var scale = scaleT.item<float>();
        foreach (var dtype in new[] { ScalarType.BFloat16, ScalarType.Float16 })
        {
            using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder, dtype: dtype);
            using var s = lm.CreateSession(16);
            using var actual = s.ForwardAllLogits(embeds);
            Assert.Equal(ScalarType.Float32, actual.dtype);
            var diff = Oracle.MaxAbsDiff(actual, expected);
            // bf16 keeps 8 significant bits (relative step 2^-8): a 2-layer model stays within a few steps.
            Assert.True(diff <= 8 * scale / 256, $"{dtype}: max abs diff {diff} (|logits| <= {scale})");
        }
    }
}

/// <summary>The projection seam: a replacement kernel sees every projection product.</summary>
public sealed class LinearKernelSeamTests
{
    private sealed class CountingKernel : ILinearKernel
    {
        public int Calls;
        public Tensor Forward(Tensor x, Tensor weight)
        {
            Calls++;
            return nn.functional.linear(x, weight);
        }
    }

    [SkippableFact]
    public void A_replacement_kernel_computes_every_projection()
    {
        using var scope = NewDisposeScope();
        using var lm = LlamaFixtures.Load(LlamaFixtures.TinyFolder);
        using var s1 = lm.CreateSession(8);
        var expected = s1.PrefillTokens([1, 5, 9]);

        var kernel = new CountingKernel();
        foreach (var p in lm.Projections) p.Kernel = kernel;
        using var s2 = lm.CreateSession(8);
        var actual = s2.PrefillTokens([1, 5, 9]);
        Assert.Equal(7 * lm.Config.NumHiddenLayers + 1, kernel.Calls); // q k v o gate up down per block, plus lm_head
        Assert.Equal(0.0, Oracle.MaxAbsDiff(actual, expected));
    }
}
