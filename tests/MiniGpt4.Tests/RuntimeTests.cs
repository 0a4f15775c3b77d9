using MiniGpt4.Runtime;
using Xunit;

namespace MiniGpt4.Tests;

public class RuntimeTests
{
    [Fact]
    public void Native_runtime_loads()
    {
        NativeRuntime.EnsureLoaded();
        NativeRuntime.EnsureLoaded();
    }

    [Fact]
    public void Diagnosis_names_backend_package_when_libtorch_is_missing()
    {
        var msg = NativeRuntime.Diagnose(new TypeInitializationException("TorchSharp.torch",
            new DllNotFoundException("Unable to load shared library 'torch_cpu'")));
        Assert.Contains("libtorch-cpu-linux-x64", msg);
        Assert.Contains("torch_cpu", msg);
    }
}
