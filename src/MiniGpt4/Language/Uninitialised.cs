using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>Parameter storage for modules that the loader fills: no initialiser runs and no page is touched.</summary>
internal static class Uninitialised
{
    /// <summary>
    /// <see cref="EmptyInit.Parameter"/>, detached from any dispose scope open on the calling thread,
    /// so the module alone owns it even when it is built inside a caller's scope.
    /// </summary>
    public static Parameter Parameter(long[] shape, ScalarType dtype, Device device)
    {
        var parameter = EmptyInit.Parameter(shape, dtype, device);
        parameter.DetachFromDisposeScope();
        return parameter;
    }
}
