using System.Diagnostics;
using System.Globalization;
using MiniGpt4.Language;
using static TorchSharp.torch;

namespace MiniGpt4.Benchmarks.Language;

/// <summary>
/// <c>quant-speed THREADS STEPS FOLDER...</c>: decode steps of several LLaMA folders (e.g. bf16, int8, int4 of one model)
/// loaded in one process and stepped in turn (one step of each, round after round), so that a busy, shared machine
/// slows every format alike; prints each folder's median and best step time and tokens/s, and the ratios to the first.
/// </summary>
internal static class QuantSpeed
{
    public static int Run(string[] args)
    {
        var threads = int.Parse(args[0], CultureInfo.InvariantCulture);
        var steps = int.Parse(args[1], CultureInfo.InvariantCulture);
        var folders = args[2..];
        set_num_threads(threads);
        var models = folders.Select(f => LlamaForCausalLM.Load(f, ScalarType.BFloat16, CPU)).ToList();
        var sessions = models.Select(m => m.CreateSession(steps + 16)).ToList();
        var times = folders.Select(_ => new List<double>()).ToList();
        var next = new int[folders.Length];
        var logits = models.Select(m => new float[m.Config.VocabSize]).ToArray();
        for (var i = 0; i < models.Count; i++)
        {
            using var first = sessions[i].PrefillTokens([1, 9038, 2501, 263]);
            next[i] = (int)first[0].argmax().item<long>();
        }
        for (var s = 0; s < steps; s++)
            for (var i = 0; i < models.Count; i++)
            {
                var start = Stopwatch.GetTimestamp();
                sessions[i].Step([next[i]], logits[i]); // the engine's step: the CPU decoder where it supports the model
                times[i].Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
                next[i] = ArgMax(logits[i]);
            }
        var baseline = Median(times[0]);
        for (var i = 0; i < folders.Length; i++)
        {
            var median = Median(times[i]);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"threads={threads} {folders[i]}: median {median:F1} ms ({1000 / median:F2} tok/s), best {times[i].Min():F1} ms ({1000 / times[i].Min():F2} tok/s), speed-up {baseline / median:F2}x (best {times[0].Min() / times[i].Min():F2}x)"));
        }
        foreach (var s in sessions) s.Dispose();
        foreach (var m in models) m.Dispose();
        return 0;
    }

    private static int ArgMax(float[] v)
    {
        var best = 0;
        for (var j = 1; j < v.Length; j++)
            if (v[j] > v[best]) best = j;
        return best;
    }

    private static double Median(List<double> v)
    {
        var sorted = v.Order().ToList();
        return sorted[sorted.Count / 2];
    }
}
