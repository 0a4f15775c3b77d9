namespace MiniGpt4.Generation;

/// <summary>
/// Sees one row of processed scores: <paramref name="step"/> = tokens generated before it,
/// <paramref name="beam"/> = beam index (0 for a single sequence). The span is only valid during the call.
/// </summary>
internal delegate void ProcessedScoresObserver(int step, int beam, ReadOnlySpan<float> processed);
