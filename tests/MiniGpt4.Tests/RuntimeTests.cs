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

    [Fact]
    public void Diagnosis_says_what_the_application_folder_lacks()
    {
        using var empty = new Support.TempDir();
        var msg = NativeRuntime.Diagnose(new TypeInitializationException("TorchSharp.torch",
            new DllNotFoundException("Unable to load shared library 'LibTorchSharp'")), appDirectory: empty.Path);
        Assert.Contains("no libtorch backend package", msg);
        Assert.Contains($"Detected in the application folder '{empty.Path}'", msg);
        Assert.Contains("libLibTorchSharp.so missing", msg);
        Assert.Contains("libtorch_cpu.so missing", msg);
        Assert.Contains("lists no libtorch package", msg);
        Assert.Contains("NuGet package cache", msg);
    }

    [Fact]
    public void Deployment_description_finds_the_backend_of_a_built_application()
    {
        // This test assembly's own folder: the test project references libtorch-cpu-linux-x64.
        var msg = NativeRuntime.DescribeDeployment(AppContext.BaseDirectory);
        if (OperatingSystem.IsLinux())
        {
            Assert.Contains($"libtorch_cpu.so found (runtimes/{System.Runtime.InteropServices.RuntimeInformation.RuntimeIdentifier}/native/libtorch_cpu.so)", msg);
            Assert.Contains("libLibTorchSharp.so found", msg);
        }
        Assert.Contains("libtorch-cpu-", msg);
        Assert.DoesNotContain("-part", msg);
    }
}
