using BenchmarkDotNet.Running;

// `realsize` runs the end-to-end check at the released shapes; anything else goes to BenchmarkDotNet.
if (args.Length > 0 && args[0] == "realsize")
    return await MiniGpt4.Benchmarks.EndToEnd.RealSizeRun.MainAsync(args[1..]);
// `quant-speed THREADS STEPS FOLDER...` steps several models in turn (docs/quantization.md's speed table).
if (args.Length > 3 && args[0] == "quant-speed")
    return MiniGpt4.Benchmarks.Language.QuantSpeed.Run(args[1..]);
// `quant-accuracy FOLDER [STEPS] [PROMPT]` prints docs/quantization.md's accuracy table for a LLaMA folder.
if (args.Length > 1 && args[0] == "quant-accuracy")
    return MiniGpt4.Benchmarks.Language.QuantAccuracy.Run(args[1..]);
BenchmarkSwitcher.FromAssembly(typeof(MiniGpt4.Benchmarks.Language.BenchModels).Assembly).Run(args);
return 0;
