using BenchmarkDotNet.Running;

// `realsize` runs the end-to-end check at the released shapes; `gguf HF_FOLDER OUT.gguf [f32|f16|bf16]` writes the
// llama.cpp file of a Hugging Face LLaMA folder (for running llama.cpp's own tools on the same weights); anything
// else goes to BenchmarkDotNet.
if (args.Length > 0 && args[0] == "realsize")
    return await MiniGpt4.Benchmarks.EndToEnd.RealSizeRun.MainAsync(args[1..]);
if (args.Length is 3 or 4 && args[0] == "gguf")
{
    var type = args.Length == 4 ? Enum.Parse<MiniGpt4.Benchmarks.Peers.GgmlType>(args[3], ignoreCase: true) : MiniGpt4.Benchmarks.Peers.GgmlType.BF16;
    MiniGpt4.Benchmarks.Peers.GgufWriter.ConvertHfLlama(args[1], Path.Combine(args[1], "tokenizer.model"), args[2], type);
    Console.WriteLine(args[2]);
    return 0;
}
// `quant-speed THREADS STEPS FOLDER...` steps several models in turn (docs/quantization.md's speed table).
if (args.Length > 3 && args[0] == "quant-speed")
    return MiniGpt4.Benchmarks.Language.QuantSpeed.Run(args[1..]);
// `gemv-rows THREADS OUT IN [ROWS...]` times the bf16 decode products for several activation rows (docs/batching.md).
if (args.Length > 2 && args[0] == "gemv-rows")
    return MiniGpt4.Benchmarks.Language.GemvRows.Run(args[1..]);
// `llamasharp-tg GGUF THREADS [TOKENS] [RUNS]` decodes with LLamaSharp's bundled llama.cpp (the peer tables).
if (args.Length > 2 && args[0] == "llamasharp-tg")
    return MiniGpt4.Benchmarks.Peers.LlamaSharpDecode.Run(args[1..]);
// `quant-accuracy FOLDER [STEPS] [PROMPT]` prints docs/quantization.md's accuracy table for a LLaMA folder.
if (args.Length > 1 && args[0] == "quant-accuracy")
    return MiniGpt4.Benchmarks.Language.QuantAccuracy.Run(args[1..]);
BenchmarkSwitcher.FromAssembly(typeof(MiniGpt4.Benchmarks.Language.BenchModels).Assembly).Run(args);
return 0;
