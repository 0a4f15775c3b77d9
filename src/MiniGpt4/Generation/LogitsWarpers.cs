namespace MiniGpt4.Generation;

/// <summary>
/// HF 4.30 sampling warpers in <c>_get_logits_warper</c>'s order (temperature, top-k, top-p) on one
/// row of float32 scores, in place; filtered tokens get -inf (HF's <c>filter_value</c>), and
/// <c>min_tokens_to_keep</c> is HF's (1 for sampling, 2 for beam-sample). Keeps its scratch
/// buffers, so a step allocates nothing; not thread-safe.
/// <para>After top-k only the kept tokens are finite, so top-p works on those few (the -inf
/// entries add exact zeros to HF's ascending cumulative sum).</para>
/// </summary>
internal sealed class LogitsWarpers
{
    private readonly int[] _candidates;  // ids still finite, [0, _count)
    private readonly ulong[] _sortKeys;  // top-p: (score, id) packed so ulong order = HF's ascending order
    private readonly double[] _mass;     // top-p: exp(score - max) beside each key
    private readonly PriorityQueue<float, float> _heap = new(); // top-k: the k largest scores, smallest first
    private int _count;
    private int _minKeep = 1;

    /// <summary>Creates scratch space for a vocabulary of <paramref name="vocabSize"/>.</summary>
    public LogitsWarpers(int vocabSize)
    {
        _candidates = new int[vocabSize];
        _sortKeys = new ulong[vocabSize];
        _mass = new double[vocabSize];
    }

    /// <summary>Ids still finite after the last <see cref="Warp"/>, unordered (a superset of the tokens with non-zero probability).</summary>
    public ReadOnlySpan<int> Candidates => _candidates.AsSpan(0, _count);

    /// <summary>Temperature (if != 1), top-k (if 0 &lt; k &lt; V), top-p (if p &lt; 1).</summary>
    public void Warp(Span<float> scores, float temperature, int topK, float topP, int minTokensToKeep = 1)
    {
        _minKeep = Math.Max(1, minTokensToKeep);
        if (temperature != 1f)
            for (int i = 0; i < scores.Length; i++) scores[i] /= temperature;
        if (topK > 0 && topK < scores.Length) TopK(scores, Math.Min(Math.Max(topK, _minKeep), scores.Length));
        else AllCandidates(scores.Length);
        if (topP < 1f) TopP(scores, topP);
    }

    /// <summary>
    /// <c>TopKLogitsWarper</c>: remove every score strictly below the k-th largest (ties with it
    /// stay, as <c>scores &lt; topk(scores, k).values[..., -1]</c>).
    /// </summary>
    private void TopK(Span<float> scores, int k)
    {
        _heap.Clear();
        for (int i = 0; i < k; i++) _heap.Enqueue(scores[i], scores[i]);
        for (int i = k; i < scores.Length; i++)
            if (scores[i] > _heap.Peek()) _heap.DequeueEnqueue(scores[i], scores[i]);
        float kth = _heap.Peek();
        _count = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            if (scores[i] < kth) scores[i] = float.NegativeInfinity;
            else _candidates[_count++] = i;
        }
    }

    private void AllCandidates(int vocab)
    {
        for (int i = 0; i < vocab; i++) _candidates[i] = i;
        _count = vocab;
    }

    /// <summary>
    /// <c>TopPLogitsWarper</c>: sort ascending, cumulative softmax, remove tokens whose cumulative
    /// probability is &lt;= 1 - p, keep at least the most likely one. Equivalently: keep, from the
    /// top, the smallest set whose mass reaches p.
    /// <para>Instead of sorting every candidate, a quickselect guided by mass finds the cut: when a
    /// partition's lower part fits in the remaining 1 - p budget all of it is removed (each of its
    /// ascending cumulative sums is within the budget), otherwise the upper part is all kept; only
    /// the last small range is sorted and walked. Expected O(candidates).</para>
    /// </summary>
    private void TopP(Span<float> scores, float topP)
    {
        int n = _count;
        var ids = _candidates.AsSpan(0, n);
        var keys = _sortKeys.AsSpan(0, n);
        var mass = _mass.AsSpan(0, n);
        float max = float.NegativeInfinity;
        foreach (var id in ids) if (scores[id] > max) max = scores[id];
        double z = 0;
        for (int j = 0; j < n; j++)
        {
            keys[j] = SortKey(scores[ids[j]], ids[j]);
            mass[j] = MathF.Exp(scores[ids[j]] - max); // float32, like the softmax HF runs
            z += mass[j];
        }
        // HF compares float32 cumulative probabilities with the Python float 1 - top_p (a float32 in the op)
        double budget = (float)(1.0 - (double)(decimal)topP) * z;
        double removed = 0;
        int lo = 0, hi = n; // [0, lo) removed, [hi, n) kept, [lo, hi) undecided; ranges ordered by key
        while (hi - lo > 32)
        {
            ulong pivot = MedianOfThree(keys[lo], keys[(lo + hi) / 2], keys[hi - 1]);
            int m = Partition(keys, mass, lo, hi, pivot);
            double lower = 0;
            for (int j = lo; j < m; j++) lower += mass[j];
            if (removed + lower <= budget) { removed += lower; lo = m; }
            else hi = m;
        }
        keys[lo..hi].Sort(mass[lo..hi]);
        int cut = hi;
        for (int j = lo; j < hi; j++)
        {
            removed += mass[j];
            if (removed > budget) { cut = j; break; }
        }
        cut = Math.Max(0, Math.Min(cut, n - _minKeep)); // min_tokens_to_keep: the most likely ones stay
        for (int j = 0; j < cut; j++) scores[KeyId(keys[j])] = float.NegativeInfinity;
        _count = 0;
        for (int j = cut; j < n; j++) _candidates[_count++] = KeyId(keys[j]);
    }

    private static ulong MedianOfThree(ulong a, ulong b, ulong c) =>
        a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));

    /// <summary>Moves keys &lt; pivot to the front of [lo, hi) (with their masses); returns the split.</summary>
    private static int Partition(Span<ulong> keys, Span<double> mass, int lo, int hi, ulong pivot)
    {
        int m = lo;
        for (int j = lo; j < hi; j++)
        {
            if (keys[j] >= pivot) continue;
            (keys[m], keys[j]) = (keys[j], keys[m]);
            (mass[m], mass[j]) = (mass[j], mass[m]);
            m++;
        }
        return m;
    }

    private static ulong SortKey(float score, int id)
    {
        int bits = BitConverter.SingleToInt32Bits(score);
        uint ordered = bits >= 0 ? (uint)bits | 0x8000_0000u : ~(uint)bits;
        return ((ulong)ordered << 32) | (uint)(int.MaxValue - id);
    }

    private static int KeyId(ulong key) => int.MaxValue - (int)(uint)key;
}
