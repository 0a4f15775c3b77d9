using MiniGpt4.Generation;

namespace MiniGpt4.Tests.Generation;

/// <summary>
/// Test double for the language model: each row's next-token logits are a pure function of the
/// tokens fed to that row so far, so a wrong beam reorder or a wrong feed shows up as wrong
/// logits. Records calls; <see cref="OnStep"/> runs inside each Step.
/// </summary>
internal sealed class HistoryStepper(int vocabSize, Func<IReadOnlyList<int>, float[]> logitsOf) : ITokenStepper
{
    private List<List<int>> _rows = [[]];

    public int VocabSize { get; } = vocabSize;
    public int Steps { get; private set; }
    public Action<int>? OnStep { get; set; }
    public IReadOnlyList<IReadOnlyList<int>> Rows => _rows;

    /// <summary>The prefill's logits: the function at the empty history, V values.</summary>
    public float[] FirstLogits() => Checked(logitsOf([]));

    public void Step(ReadOnlySpan<int> tokenPerRow, Span<float> logits)
    {
        if (tokenPerRow.Length != _rows.Count)
            throw new InvalidOperationException($"Step got {tokenPerRow.Length} tokens for {_rows.Count} rows.");
        Steps++;
        for (int r = 0; r < _rows.Count; r++)
        {
            _rows[r].Add(tokenPerRow[r]);
            Checked(logitsOf(_rows[r])).CopyTo(logits.Slice(r * VocabSize, VocabSize));
        }
        OnStep?.Invoke(Steps);
    }

    public void ReorderRows(ReadOnlySpan<int> source)
    {
        var next = new List<List<int>>(source.Length);
        foreach (var s in source) next.Add([.. _rows[s]]);
        _rows = next;
    }

    private float[] Checked(float[] logits) =>
        logits.Length == VocabSize ? logits : throw new InvalidOperationException("logits length != V");

    /// <summary>Logits that make <paramref name="id"/> the only likely token (10 above the rest).</summary>
    public static float[] OneHot(int vocab, int id)
    {
        var l = new float[vocab];
        l[id] = 10f;
        return l;
    }
}
