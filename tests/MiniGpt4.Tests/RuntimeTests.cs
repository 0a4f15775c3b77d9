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
    public void Diagnosis_names_libstdcxx_when_the_loader_reports_a_missing_GLIBCXX_version()
    {
        // What dlopen reports on Debian 12 / Ubuntu 22.04 (measured with Debian 12's libstdc++ 12.2).
        var loader = "Unable to load shared library 'libLibTorchSharp.so' or one of its dependencies.\n" +
                     "/usr/lib/x86_64-linux-gnu/libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by libLibTorchSharp.so)";
        var msg = NativeRuntime.Diagnose(new TypeInitializationException("TorchSharp.torch",
            new NotSupportedException("This application or script uses TorchSharp but doesn't contain a reference to libtorch-cpu-linux-x64")), loader);
        Assert.Contains("lacks GLIBCXX_3.4.32", msg);
        Assert.Contains("bootstrap-linux.sh", msg);
        Assert.Contains("version `GLIBCXX_3.4.32' not found", msg);
        Assert.DoesNotContain("no libtorch backend package", msg);
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
