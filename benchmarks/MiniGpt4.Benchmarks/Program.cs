using BenchmarkDotNet.Running;

// `realsize` runs the end-to-end check at the released shapes; anything else goes to BenchmarkDotNet.
if (args.Length > 0 && args[0] == "realsize")
    return await MiniGpt4.Benchmarks.EndToEnd.RealSizeRun.MainAsync(args[1..]);
BenchmarkSwitcher.FromAssembly(typeof(MiniGpt4.Benchmarks.Language.BenchModels).Assembly).Run(args);
return 0;
