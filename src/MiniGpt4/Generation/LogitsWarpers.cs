namespace MiniGpt4.Generation;

/// <summary>
/// HF 4.30 sampling warpers in <c>_get_logits_warper</c>'s order (temperature, top-k, top-p) on one
/// row of float32 scores, in place; filtered tokens get -inf (HF's <c>filter_value</c>), and
/// <c>min_tokens_to_keep</c> is 1 (single-sequence sampling). Keeps its scratch buffers, so a step
/// allocates nothing; not thread-safe.
/// <para>After top-k only the kept tokens are finite, so top-p sorts those few instead of the whole
/// vocabulary (the -inf entries add exact zeros to HF's ascending cumulative sum).</para>
/// </summary>
internal sealed class LogitsWarpers
{
    private readonly int[] _candidates;
    private readonly ulong[] _sortKeys;
    private float[] _heap = [];
    private int _count;
    private double _tailExp; // sum of exp(score - max) over the tokens removed up front

    /// <summary>Creates scratch space for a vocabulary of <paramref name="vocabSize"/>.</summary>
    public LogitsWarpers(int vocabSize)
    {
        _candidates = new int[vocabSize];
        _sortKeys = new ulong[vocabSize];
    }

    /// <summary>Ids still finite after the last <see cref="Warp"/>, unordered (a superset of the tokens with non-zero probability).</summary>
    public ReadOnlySpan<int> Candidates => _candidates.AsSpan(0, _count);

    /// <summary>Temperature (if != 1), top-k (if 0 &lt; k &lt; V), top-p (if p &lt; 1).</summary>
    public void Warp(Span<float> scores, float temperature, int topK, float topP)
    {
        if (temperature != 1f)
            for (int i = 0; i < scores.Length; i++) scores[i] /= temperature;
        _tailExp = 0;
        if (topK > 0 && topK < scores.Length) TopK(scores, topK);
        else AllCandidates(scores, topP);
        if (topP < 1f) TopP(scores, topP);
    }

    /// <summary>
    /// <c>TopKLogitsWarper</c>: remove every score strictly below the k-th largest (ties with it
    /// stay, as <c>scores &lt; topk(scores, k).values[..., -1]</c>).
    /// </summary>
    private void TopK(Span<float> scores, int k)
    {
        if (_heap.Length < k) _heap = new float[k];
        var heap = _heap.AsSpan(0, k); // min-heap of the k largest scores seen
        for (int i = 0; i < k; i++) { heap[i] = scores[i]; SiftUp(heap, i); }
        for (int i = k; i < scores.Length; i++)
            if (scores[i] > heap[0]) { heap[0] = scores[i]; SiftDown(heap, 0); }
        float kth = heap[0];
        _count = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            if (scores[i] < kth) scores[i] = float.NegativeInfinity;
            else _candidates[_count++] = i;
        }
    }

    /// <summary>
    /// Without top-k every token is a candidate. For top-p, tokens with probability below (1-p)/V
    /// have a total mass below 1-p, so HF's ascending cumulative sum removes each of them: they are
    /// removed up front and their mass seeds the cumulative sum, so only the rest is sorted.
    /// </summary>
    private void AllCandidates(Span<float> scores, float topP)
    {
        _count = 0;
        if (topP >= 1f)
        {
            for (int i = 0; i < scores.Length; i++) _candidates[_count++] = i;
            return;
        }
        float max = Max(scores);
        double z = 0;
        foreach (var s in scores) z += Math.Exp((double)s - max);
        double tau = (1.0 - (double)(decimal)topP) / scores.Length;
        for (int i = 0; i < scores.Length; i++)
        {
            double e = Math.Exp((double)scores[i] - max);
            if (e / z < tau && scores[i] != max)
            {
                _tailExp += e;
                scores[i] = float.NegativeInfinity;
            }
            else _candidates[_count++] = i;
        }
    }

    /// <summary>
    /// <c>TopPLogitsWarper</c>: sort ascending, cumulative softmax, remove tokens whose cumulative
    /// probability is &lt;= 1 - p, keep at least the most likely one. Equivalently: keep, from the
    /// top, the smallest set whose mass reaches p.
    /// </summary>
    private void TopP(Span<float> scores, float topP)
    {
        int n = _count;
        var ids = _candidates.AsSpan(0, n);
        var keys = _sortKeys.AsSpan(0, n);
        for (int j = 0; j < n; j++) keys[j] = SortKey(scores[ids[j]], ids[j]);
        keys.Sort(); // ascending score; among equal scores the larger id first (the smaller id is kept longer)
        float max = scores[KeyId(keys[n - 1])];
        double z = _tailExp; // the tail removed up front is part of the softmax
        for (int j = 0; j < n; j++) z += Math.Exp((double)scores[KeyId(keys[j])] - max);
        // HF compares float32 cumulative probabilities with the Python float 1 - top_p (a float32 in the op)
        float threshold = (float)(1.0 - (double)(decimal)topP);
        double cumulative = _tailExp / z;
        int kept = 0;
        for (int j = 0; j < n; j++)
        {
            int id = KeyId(keys[j]);
            cumulative += Math.Exp((double)scores[id] - max) / z;
            if ((float)cumulative <= threshold && j < n - 1) scores[id] = float.NegativeInfinity;
            else ids[kept++] = id;
        }
        _count = kept;
    }

    private static ulong SortKey(float score, int id)
    {
        int bits = BitConverter.SingleToInt32Bits(score);
        uint ordered = bits >= 0 ? (uint)bits | 0x8000_0000u : ~(uint)bits;
        return ((ulong)ordered << 32) | (uint)(int.MaxValue - id);
    }

    private static int KeyId(ulong key) => int.MaxValue - (int)(uint)key;

    private static float Max(ReadOnlySpan<float> s)
    {
        float m = float.NegativeInfinity;
        foreach (var v in s) if (v > m) m = v;
        return m;
    }

    private static void SiftUp(Span<float> h, int i)
    {
        while (i > 0)
        {
            int p = (i - 1) / 2;
            if (h[p] <= h[i]) return;
            (h[p], h[i]) = (h[i], h[p]);
            i = p;
        }
    }

    private static void SiftDown(Span<float> h, int i)
    {
        while (true)
        {
            int l = 2 * i + 1, r = l + 1, m = i;
            if (l < h.Length && h[l] < h[m]) m = l;
            if (r < h.Length && h[r] < h[m]) m = r;
            if (m == i) return;
            (h[m], h[i]) = (h[i], h[m]);
            i = m;
        }
    }
}
