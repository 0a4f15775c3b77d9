namespace MiniGpt4;

/// <summary>
/// A saved conversation cannot be restored: the data is not a MiniGpt4 session, was written by an unknown
/// format version, is truncated or corrupt, or does not fit this pipeline's model. Nothing was restored.
/// </summary>
public class MiniGptSessionException : MiniGptException
{
    /// <summary>Creates the exception.</summary>
    public MiniGptSessionException(string message, Exception? inner = null) : base(message, inner) { }
}

/// <summary>
/// A saved conversation was written by another model (other weights, tokenizer, variant or shapes) than the
/// pipeline asked to restore it: its cached keys/values and image embeddings mean nothing to this model.
/// </summary>
public sealed class MiniGptModelMismatchException : MiniGptSessionException
{
    /// <summary>Creates the exception.</summary>
    public MiniGptModelMismatchException(string message, string savedModel, string currentModel) : base(message)
    {
        SavedModel = savedModel;
        CurrentModel = currentModel;
    }

    /// <summary>The identity of the model that saved the conversation (description and digest).</summary>
    public string SavedModel { get; }

    /// <summary>The identity of this pipeline's model (description and digest).</summary>
    public string CurrentModel { get; }
}
