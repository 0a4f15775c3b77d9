namespace MiniGpt4.Generation;

/// <summary>
/// The text side's hook (incremental detokenizer + user stop strings). The engine calls
/// <see cref="ShouldStop"/> once per accepted token, in order, unless EOS or a stop-token suffix
/// already ended the run with that token; returning true ends the run with
/// <see cref="MiniGptFinishReason.Stop"/> and the token stays in the result (the text side trims the text).
/// Not used by beam search (no single token stream there).
/// </summary>
internal interface ITextStopper
{
    /// <summary>Sees the next accepted token; true to stop after it.</summary>
    bool ShouldStop(int tokenId);
}
