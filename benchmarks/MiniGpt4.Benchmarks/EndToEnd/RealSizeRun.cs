using System.Diagnostics;
using System.Text.Json;
using MiniGpt4.Bridge;
using MiniGpt4.Language;
using MiniGpt4.Runtime;
using MiniGpt4.Vision;
using MiniGpt4.Weights;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Benchmarks.EndToEnd;

/// <summary>
/// End to end at the released shapes: writes random fp16 weights in the real layouts (EVA-ViT-g 39 blocks
/// of 1408, bert-base Q-Former, <c>llama_proj</c> 768 -> 4096, a Vicuna-7B-shaped LLaMA with
/// <c>--layers</c> blocks), loads them through <see cref="MiniGptPipeline.LoadAsync(string, MiniGptLoadOptions?, IProgress{MiniGptProgress}?, CancellationToken)"/>
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

        var weightBytes = DirBytes(dir, "*.safetensors");
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
        Console.WriteLine($"loaded in {load.Elapsed.TotalSeconds:F1} s; peak RSS {hwm / 1e9:F2} GB for {weightBytes / 1e9:F2} GB of fp16 files (bf16 in memory: same bytes), ratio {hwm / (double)weightBytes:F2}");

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

    private static void Generate(string dir, int layers, string tokenizer)
    {
        Directory.CreateDirectory(dir);
        var llmDir = Path.Combine(dir, "llm");
        Directory.CreateDirectory(llmDir);
        var f16 = ScalarType.Float16;

        using (var vit = new EvaVisionTransformer(new VisionConfig(), f16, CPU))
            SafetensorsWriter.Write(Path.Combine(dir, "eva_vit_g.safetensors"), Random(vit, _ => true));
        var q = new QFormerConfig();
        using (var bridge = new QFormerProjector(q, 4096, f16, CPU))
        {
            SafetensorsWriter.Write(Path.Combine(dir, "blip2.safetensors"), Random(bridge, k => !k.StartsWith("llama_proj.", StringComparison.Ordinal)));
            SafetensorsWriter.Write(Path.Combine(dir, "stage2.safetensors"), Random(bridge, k => k.StartsWith("llama_proj.", StringComparison.Ordinal)));
        }
        var config = new Dictionary<string, object>
        {
            ["architectures"] = new[] { "LlamaForCausalLM" }, ["model_type"] = "llama", ["hidden_size"] = 4096, ["intermediate_size"] = 11008,
            ["num_hidden_layers"] = layers, ["num_attention_heads"] = 32, ["num_key_value_heads"] = 32, ["vocab_size"] = 32000,
            ["max_position_embeddings"] = 2048, ["rms_norm_eps"] = 1e-6, ["rope_theta"] = 10000.0, ["hidden_act"] = "silu",
            ["tie_word_embeddings"] = false, ["bos_token_id"] = 1, ["eos_token_id"] = 2, ["torch_dtype"] = "float16",
        };
        var configPath = Path.Combine(llmDir, "config.json");
        File.WriteAllText(configPath, JsonSerializer.Serialize(config));
        using (var llm = new LlamaForCausalLM(LlamaConfig.FromFile(configPath), f16, CPU))
            SafetensorsWriter.Write(Path.Combine(llmDir, "model.safetensors"), Random(llm, _ => true));
        File.Copy(tokenizer, Path.Combine(llmDir, "tokenizer.model"), overwrite: true);
        File.WriteAllText(Path.Combine(dir, "minigpt4.json"), """
            { "variant": "minigpt4-vicuna0",
              "vision": { "checkpoint": "eva_vit_g.safetensors" },
              "qformer": { "checkpoint": "blip2.safetensors" },
              "projection": { "checkpoint": "stage2.safetensors" },
              "llm": { "path": "llm" } }
            """);
    }

    /// <summary>The module's state-dict entries with random values made one at a time (norm weights 1, biases 0).</summary>
    private static IEnumerable<(string, ScalarType, long[], Func<Tensor>)> Random(nn.Module module, Func<string, bool> keep)
    {
        var seed = 0;
        foreach (var (key, t) in module.state_dict())
        {
            if (!keep(key)) continue;
            var shape = t.shape;
            var dtype = t.dtype;
            var s = ++seed;
            yield return (key, dtype, shape, () =>
            {
                using var g = new Generator((ulong)s);
                if (key.EndsWith("norm.weight", StringComparison.OrdinalIgnoreCase) || key.Contains("LayerNorm.weight") || key.Contains("norm1.weight") || key.Contains("norm2.weight") || key.StartsWith("ln_vision.weight"))
                    return ones(shape, dtype);
                if (!torch.is_floating_point(t)) return arange(shape[^1], dtype: dtype).expand(shape).contiguous();
                using var scope = NewDisposeScope();
                using var std = 0.02f.ToScalar();
                var x = randn(shape, ScalarType.Float32, generator: g).mul_(std);
                return x.to(dtype).MoveToOuterDisposeScope();
            });
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "malloc_trim")]
    private static extern int MallocTrim(nuint pad);

    private static long DirBytes(string dir, string pattern = "*") =>
        Directory.EnumerateFiles(dir, pattern, SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);

    private static long Status(string field) =>
        long.Parse(File.ReadLines("/proc/self/status").First(l => l.StartsWith(field + ":", StringComparison.Ordinal))
            .Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
}
