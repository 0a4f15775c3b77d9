using System.Globalization;
using MiniGpt4.Language;
using MiniGpt4.Language.Quantization;
using MiniGpt4.Text;
using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Benchmarks.Language;

/// <summary>
/// <c>quant-accuracy FOLDER [STEPS] [PROMPT]</c>: the accuracy table of docs/quantization.md for one Hugging Face LLaMA
/// folder. The float32 model's greedy continuation of the prompt is the reference; bf16, int8 and int4 (quantized at
/// load, 8-bit head) are each fed the same tokens (teacher forcing) and compared at every step (max |Δ logit|, top-1
/// agreement), then decode greedily on their own until their first token that differs from float32's.
/// </summary>
internal static class QuantAccuracy
{
    public static int Run(string[] args)
    {
        var folder = args[0];
        var steps = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 128;
        var text = args.Length > 2 ? args[2] : "Once upon a time";
        var prompt = LlamaTextTokenizer.FromDirectory(folder).Encode(text, addBos: true).ToArray();
        var config = LlamaConfig.FromFile(folder);

        using var reference = LlamaForCausalLM.Load(folder, ScalarType.Float32, CPU);
        var (tokens, exact) = Greedy(reference, prompt, steps);
        Console.WriteLine($"{folder}: prompt {prompt.Length} tokens, {steps} teacher-forced steps; logits range [{exact.Min(r => r.Min()):F2}, {exact.Max(r => r.Max()):F2}]");
        Console.WriteLine("| weights | max abs logit diff | mean abs logit diff | top-1 agreement | greedy tokens until first divergence |");
        Console.WriteLine("|---|---|---|---|---|");
        foreach (var format in new[] { QuantFormat.None, QuantFormat.Q8, QuantFormat.Q4 })
        {
            using var source = WeightFiles.Open(folder);
            using var quantizing = format == QuantFormat.None ? null : new QuantizingWeightSource(source, LlamaQuantization.For(format), config.TieWordEmbeddings);
            using var lm = LlamaForCausalLM.Load(config, (IWeightSource?)quantizing ?? source, ScalarType.BFloat16, CPU);
            var forced = Forced(lm, prompt, tokens);
            double max = 0, sum = 0;
            long count = 0;
            var agree = 0;
            for (var s = 0; s < tokens.Count; s++)
            {
                for (var v = 0; v < forced[s].Length; v++)
                {
                    var d = Math.Abs(forced[s][v] - exact[s][v]);
                    max = Math.Max(max, d);
                    sum += d;
                    count++;
                }
                if (Argmax(forced[s]) == tokens[s]) agree++;
            }
            var (own, _) = Greedy(lm, prompt, steps);
            var diverge = Enumerable.Range(0, steps).FirstOrDefault(i => own[i] != tokens[i], -1);
            var name = format == QuantFormat.None ? "bf16" : $"{LlamaQuantization.Name(format)} (head int8)";
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {name} | {max:F4} | {sum / count:F4} | {agree}/{tokens.Count} | {(diverge < 0 ? $"none in {steps}" : diverge.ToString(CultureInfo.InvariantCulture))} |"));
        }
        return 0;
    }

    private static int Argmax(float[] row)
    {
        var best = 0;
        for (var i = 1; i < row.Length; i++) if (row[i] > row[best]) best = i;
        return best;
    }

    private static float[] Row(Tensor logits)
    {
        using var f = logits.to(ScalarType.Float32);
        return f.data<float>().ToArray();
    }

    /// <summary>Greedy decoding: the picked tokens and the logits each was picked from.</summary>
    private static (List<int> Tokens, List<float[]> Logits) Greedy(LlamaForCausalLM lm, int[] prompt, int steps)
    {
        using var session = lm.CreateSession(prompt.Length + steps + 1);
        var tokens = new List<int>();
        var rows = new List<float[]>();
        var logits = session.PrefillTokens(prompt);
        while (tokens.Count < steps)
        {
            var row = Row(logits);
            logits.Dispose();
            rows.Add(row);
            tokens.Add(Argmax(row));
            logits = session.Step([tokens[^1]]);
        }
        logits.Dispose();
        return (tokens, rows);
    }

    /// <summary>The logits before each of <paramref name="tokens"/> when those tokens are fed in.</summary>
    private static List<float[]> Forced(LlamaForCausalLM lm, int[] prompt, List<int> tokens)
    {
        using var session = lm.CreateSession(prompt.Length + tokens.Count + 1);
        var rows = new List<float[]>();
        var logits = session.PrefillTokens(prompt);
        foreach (var t in tokens)
        {
            rows.Add(Row(logits));
            logits.Dispose();
            logits = session.Step([t]);
        }
        logits.Dispose();
        return rows;
    }
}
