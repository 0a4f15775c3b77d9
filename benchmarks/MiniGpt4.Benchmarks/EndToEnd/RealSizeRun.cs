using System.Diagnostics;
using MiniGpt4.Cli.Synth;
using MiniGpt4.Runtime;

namespace MiniGpt4.Benchmarks.EndToEnd;

/// <summary>
/// End to end at the released shapes: writes random fp16 weights in the real layouts with the CLI's
/// <c>synth</c> writer (<see cref="ModelSynthesizer"/>, preset vicuna-7b with <c>--layers</c> blocks), loads them through <see cref="MiniGptPipeline.LoadAsync(string, MiniGptLoadOptions?, IProgress{MiniGptProgress}?, CancellationToken)"/>
/// in bf16, and reports load time, peak resident memory, image encoding, prefill and decode speed.
/// <code>dotnet run -c Release --project benchmarks/MiniGpt4.Benchmarks -- realsize --layers 32 --dir /tmp/minigpt4-real --tokenizer ../shared/assets/llama-tokenizer.model --image ../shared/oracle/images/a_gradient_shapes_640x480.png</code>
/// Random weights make the text meaningless; the timings and memory are what a real model costs.
/// </summary>
internal static class RealSizeRun
{
    public static async Task<int> MainAsync(string[] args)
    {
        string Arg(string name, string fallback) { var i = Array.IndexOf(args, "--" + name); return i >= 0 && i + 1 < args.Length ? args[i + 1] : fallback; }
        var layers = int.Parse(Arg("layers", "32"));
        var dir = Path.GetFullPath(Arg("dir", Path.Combine(Path.GetTempPath(), "minigpt4-realsize")));
        var tokenizer = Path.GetFullPath(Arg("tokenizer", "../shared/assets/llama-tokenizer.model"));
        var image = Path.GetFullPath(Arg("image", "../shared/oracle/images/a_gradient_shapes_640x480.png"));
        var threads = int.Parse(Arg("threads", Environment.ProcessorCount.ToString()));
        var newTokens = int.Parse(Arg("tokens", "16"));

        var manifest = Path.Combine(dir, "minigpt4.json");
        if (!File.Exists(manifest) || Arg("regenerate", "no") == "yes")
        {
            var sw = Stopwatch.StartNew();
            Generate(dir, layers, tokenizer);
            Console.WriteLine($"generated {DirBytes(dir) / 1e9:F2} GB of fp16 weights in {sw.Elapsed.TotalSeconds:F0} s");
        }

        var weightBytes = DirBytes(dir, "*.safetensors") + DirBytes(dir, "*.pth");
        var load = Stopwatch.StartNew();
        string? stage = null;
        var progress = new SyncProgress<MiniGptProgress>(p =>
        {
            if (p.Stage == stage) return;
            stage = p.Stage;
            Console.WriteLine($"  [{load.Elapsed.TotalSeconds,5:F1} s] {p.Stage,-16} RSS {Status("VmRSS") / 1e9:F2} GB, peak {Status("VmHWM") / 1e9:F2} GB");
        });
        using var pipeline = await MiniGptPipeline.LoadAsync(manifest, new MiniGptLoadOptions { DType = MiniGptDType.BFloat16, Threads = threads }, progress);
        load.Stop();
        var hwm = Status("VmHWM");
        Console.WriteLine($"loaded in {load.Elapsed.TotalSeconds:F1} s; peak RSS {hwm / 1e9:F2} GB for {weightBytes / 1e9:F2} GB of fp16 weight files (bf16 in memory: same bytes), ratio {hwm / (double)weightBytes:F2}");

        var options = GenerationOptions.Greedy with { MaxNewTokens = newTokens, MinNewTokens = newTokens, UseTemplateStops = false };
        for (var run = 0; run < 2; run++)
        {
            using var session = pipeline.CreateSession();
            var enc = Stopwatch.StartNew();
            session.AddImage(ImageInput.FromFile(image));
            enc.Stop();
            var afterImage = (Status("VmRSS"), Status("VmHWM"));
            if (args.Contains("--trim"))
            {
                MallocTrim(0);
                Console.WriteLine($"  RSS after image then malloc_trim: {Status("VmRSS") / 1e9:F2} GB");
            }
            var r = await session.AskAsync("Describe this image in detail.", options);
            Console.WriteLine($"  RSS/peak after image {afterImage.Item1 / 1e9:F2}/{afterImage.Item2 / 1e9:F2} GB, after answer {Status("VmRSS") / 1e9:F2}/{Status("VmHWM") / 1e9:F2} GB");
            Console.WriteLine($"run {run + 1}: image encode {enc.Elapsed.TotalMilliseconds:F0} ms; prefill {r.Usage.PromptTokens} positions {r.Timings.PrefillMilliseconds:F0} ms; " +
                              $"decode {r.Usage.GeneratedTokens} tokens {r.Timings.DecodeTokensPerSecond:F2} tok/s ({1000 / Math.Max(r.Timings.DecodeTokensPerSecond, 1e-9):F0} ms/token)");
        }
        Console.WriteLine($"threads {threads}; peak RSS {Status("VmHWM") / 1e9:F2} GB");
        return 0;
    }

    /// <summary>The model, written by the CLI's <c>synth</c> (vicuna-7b preset, fp16 as released, the real tokenizer).</summary>
    private static void Generate(string dir, int layers, string tokenizer) =>
        ModelSynthesizer.Write(new SynthRequest(SynthPreset.Get("vicuna-7b"), dir, Layers: layers, Tokenizer: tokenizer), Console.Out);

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    private static long DirBytes(string dir, string pattern = "*") =>
        Directory.EnumerateFiles(dir, pattern, SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);

    private static long Status(string field) =>
        long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal))
            .Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
}
