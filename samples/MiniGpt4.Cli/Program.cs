using System.Diagnostics;
using System.Text.Json;
using MiniGpt4;
using MiniGpt4.Abstractions;

// MiniGpt4.NET console sample: chat, generate, tokenize, convert.
return await Cli.RunAsync(args);

internal static class Cli
{
    private const string Usage = """
        MiniGpt4.NET sample

        usage:
          chat      --model <minigpt4.json|folder> --image <file> [--dtype float32|bfloat16] [--device cpu|cuda]
          generate  --model <minigpt4.json|folder> [--image <file>] --prompt "<question>"
                    [--temperature 0] [--top-p P] [--top-k K] [--repetition-penalty R] [--num-beams N]
                    [--length-penalty L] [--max-new-tokens N] [--min-new-tokens N] [--seed S] [--stop <s>]...
                    [--stop-token-id N]... [--no-template-stops] [--raw] [--dtype float32|bfloat16|float16]
                    [--device cpu|cuda] [--threads N] [--decoder imagesharp|skia] [--format text|json]
          tokenize  --model <minigpt4.json|HF folder|tokenizer.model> --text "..." [--no-bos] [--format text|json]
          convert   --model <minigpt4.json|folder> --out <dir> [--dtype bfloat16|float16|float32]

        Without --image, generate runs the language model alone (--model may be a plain Hugging Face
        LLaMA folder); --raw feeds BOS + the prompt with no template. --temperature 0 means greedy.
        """;

    private const string WeightsHelp = """
        No --model given. MiniGpt4.NET never downloads weights; get the released files yourself:
          MiniGPT-4 (Vicuna-7B):  eva_vit_g.pth (LAVIS), blip2_pretrained_flant5xxl.pth (LAVIS),
                                  prerained_minigpt4_7b.pth (MiniGPT-4 README), and the Vicuna-7B v0
                                  Hugging Face folder (config.json, tokenizer.model, weights).
          MiniGPT-4 (Llama-2):    eva_vit_g.pth, pretrained_minigpt4_llama2_7b.pth, Llama-2-7b-chat-hf.
        Put them in one folder with a minigpt4.json naming the files, e.g.
          { "variant": "minigpt4-vicuna0",
            "vision": { "checkpoint": "eva_vit_g.pth" },
            "qformer": { "checkpoint": "blip2_pretrained_flant5xxl.pth" },
            "projection": { "checkpoint": "prerained_minigpt4_7b.pth" },
            "llm": { "path": "vicuna-7b" } }
        then run:  generate --model <folder> --image photo.jpg --prompt "Describe this image."
        See README.md for details.
        """;

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.WriteLine(Usage);
            Console.WriteLine(WeightsHelp);
            return 0;
        }
        var cmd = args[0];
        var opts = Args.Parse(args.Skip(1).ToArray());
        using var cts = new CancellationTokenSource();
        Console.CancelKeyPress += (_, e) => { e.Cancel = true; cts.Cancel(); };
        try
        {
            if (cmd != "tokenize" && opts.Get("model") is null)
            {
                Console.Error.WriteLine(WeightsHelp);
                return 2;
            }
            return cmd switch
            {
                "generate" => await GenerateAsync(opts, cts.Token),
                "chat" => await ChatAsync(opts, cts.Token),
                "tokenize" => Tokenize(opts),
                "convert" => await ConvertAsync(opts, cts.Token),
                _ => Fail($"unknown command '{cmd}'\n\n{Usage}"),
            };
        }
        catch (MiniGptException ex)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            return 1;
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine($"error: {ex.Message}");
            return 2;
        }
    }

    private static int Fail(string message)
    {
        Console.Error.WriteLine(message);
        return 2;
    }

    private static MiniGptLoadOptions LoadOptions(Args a) => new()
    {
        DType = a.Get("dtype") switch
        {
            null or "bfloat16" or "bf16" => MiniGptDType.BFloat16,
            "float32" or "fp32" => MiniGptDType.Float32,
            "float16" or "fp16" => MiniGptDType.Float16,
            var other => throw new ArgumentException($"unknown --dtype '{other}'"),
        },
        Device = a.Get("device") ?? "cpu",
        Threads = a.GetInt("threads"),
        Images = new ImageDecodingOptions
        {
            // --decoder skia decodes JPEG bit-exactly like Pillow (libjpeg-turbo); ImageSharp is the library default.
            Decoder = a.Get("decoder") switch
            {
                null or "imagesharp" => ImageDecodingOptions.Default.Decoder,
                "skia" => MiniGpt4.Imaging.Skia.SkiaImageDecoder.Instance,
                var other => throw new ArgumentException($"unknown --decoder '{other}' (imagesharp or skia)"),
            },
        },
    };

    private static GenerationOptions GenOptions(Args a)
    {
        var o = new GenerationOptions();
        var t = a.GetFloat("temperature");
        if (t is 0f) o = o with { DoSample = false, Temperature = 0f };
        else if (t is float tt) o = o with { Temperature = tt };
        return o with
        {
            TopP = a.GetFloat("top-p") ?? o.TopP,
            TopK = a.GetInt("top-k") ?? o.TopK,
            RepetitionPenalty = a.GetFloat("repetition-penalty") ?? o.RepetitionPenalty,
            NumBeams = a.GetInt("num-beams") ?? o.NumBeams,
            LengthPenalty = a.GetFloat("length-penalty") ?? o.LengthPenalty,
            MaxNewTokens = a.GetInt("max-new-tokens") ?? o.MaxNewTokens,
            MinNewTokens = a.GetInt("min-new-tokens") ?? o.MinNewTokens,
            Seed = a.GetLong("seed"),
            StopStrings = a.GetAll("stop"),
            StopTokenIds = a.GetAll("stop-token-id").Select(int.Parse).ToArray(),
            UseTemplateStops = !a.Has("no-template-stops"),
        };
    }

    private static Progress<MiniGptProgress> ProgressPrinter()
    {
        string? lastStage = null;
        var lastDecile = -1;
        return new Progress<MiniGptProgress>(p =>
        {
            var decile = (int)(p.Fraction * 10);
            if (p.Stage == lastStage && decile == lastDecile) return;
            lastStage = p.Stage;
            lastDecile = decile;
            Console.Error.WriteLine($"[load] {p.Fraction,4:P0} {p.Stage}{(p.File is null ? "" : " " + Path.GetFileName(p.File))}");
        });
    }

    private static async Task<int> GenerateAsync(Args a, CancellationToken ct)
    {
        var prompt = a.Get("prompt") ?? throw new ArgumentException("generate needs --prompt");
        var json = a.Get("format") == "json";
        var options = GenOptions(a);
        using var pipeline = await MiniGptPipeline.LoadAsync(a.Get("model")!, LoadOptions(a), json ? null : ProgressPrinter(), ct);
        MiniGptResponse response;
        if (a.Has("raw"))
            response = await RawAsync(pipeline.LanguageModel, prompt, options, json, ct);
        else
        {
            using var session = pipeline.CreateSession();
            if (a.Get("image") is { } image) session.AddImage(ImageInput.FromFile(image), ct);
            await foreach (var delta in session.StreamAsync(prompt, options, ct))
                if (!json) Console.Write(delta);
            response = session.LastResponse!;
        }
        if (json) Console.WriteLine(ToJson(response));
        else Console.WriteLine();
        return 0;
    }

    private static async Task<MiniGptResponse> RawAsync(ILanguageModel lm, string prompt, GenerationOptions options, bool quiet, CancellationToken ct)
    {
        var ids = lm.Tokenize(prompt, addBos: true);
        var seq = new PromptSequence().AddTokens(ids);
        var text = new System.Text.StringBuilder();
        var tokens = new List<int>();
        GenerationUpdate? last = null;
        await foreach (var u in lm.GenerateAsync(seq, options, null, ct))
        {
            if (!quiet) Console.Write(u.Text);
            text.Append(u.Text);
            tokens.AddRange(u.TokenIds);
            last = u;
        }
        return new MiniGptResponse
        {
            Text = text.ToString(), RawText = text.ToString(), TokenIds = tokens, FinishReason = last!.FinishReason!.Value,
            Usage = last.Usage!, Timings = last.Timings!, Prompt = prompt, SegmentIds = new[] { ids }, SequenceScore = last.SequenceScore,
        };
    }

    private static string ToJson(MiniGptResponse r) => JsonSerializer.Serialize(new Dictionary<string, object?>
    {
        ["text"] = r.Text,
        ["raw_text"] = r.RawText,
        ["token_ids"] = r.TokenIds,
        ["prompt"] = r.Prompt,
        ["segment_ids"] = r.SegmentIds,
        ["prompt_tokens"] = r.Usage.PromptTokens,
        ["generated_tokens"] = r.Usage.GeneratedTokens,
        ["finish_reason"] = r.FinishReason.ToString().ToLowerInvariant(),
        ["sequence_score"] = r.SequenceScore,
        ["usage"] = new Dictionary<string, int>
        {
            ["prompt_tokens"] = r.Usage.PromptTokens, ["generated_tokens"] = r.Usage.GeneratedTokens,
            ["truncated_prompt_tokens"] = r.Usage.TruncatedPromptTokens, ["reused_prompt_tokens"] = r.Usage.ReusedPromptTokens,
            ["prefilled_prompt_tokens"] = r.Usage.PrefilledPromptTokens,
        },
        ["timings"] = new Dictionary<string, double>
        {
            ["image_encode_ms"] = r.Timings.ImageEncodeMilliseconds, ["prefill_ms"] = r.Timings.PrefillMilliseconds,
            ["decode_ms"] = r.Timings.DecodeMilliseconds, ["decode_tokens_per_s"] = r.Timings.DecodeTokensPerSecond,
        },
    }, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping });

    private static async Task<int> ChatAsync(Args a, CancellationToken ct)
    {
        var image = a.Get("image") ?? throw new ArgumentException("chat needs --image");
        var options = GenOptions(a);
        using var pipeline = await MiniGptPipeline.LoadAsync(a.Get("model")!, LoadOptions(a), ProgressPrinter(), ct);
        using var session = pipeline.CreateSession();
        session.AddImage(ImageInput.FromFile(image), ct);
        Console.WriteLine("Ask about the image (empty line or Ctrl-D to quit).");
        while (true)
        {
            Console.Write("> ");
            var q = Console.ReadLine();
            if (string.IsNullOrWhiteSpace(q)) return 0;
            var sw = Stopwatch.StartNew();
            await foreach (var delta in session.StreamAsync(q, options, ct)) Console.Write(delta);
            var r = session.LastResponse!;
            Console.WriteLine();
            Console.Error.WriteLine($"[{r.Usage.GeneratedTokens} tokens, {r.Timings.DecodeTokensPerSecond:F1} tok/s, prefilled {r.Usage.PrefilledPromptTokens} of {r.Usage.PromptTokens}, {sw.Elapsed.TotalSeconds:F1} s]");
        }
    }

    private static int Tokenize(Args a)
    {
        var model = a.Get("model") ?? throw new ArgumentException("tokenize needs --model");
        var text = a.Get("text") ?? throw new ArgumentException("tokenize needs --text");
        var tok = MiniGptTokenizer.Load(model);
        var ids = tok.Encode(text, addBos: !a.Has("no-bos"));
        var pieces = ids.Select(tok.Piece).ToArray();
        if (a.Get("format") == "json")
            Console.WriteLine(JsonSerializer.Serialize(new { ids, pieces }, new JsonSerializerOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }));
        else
            for (var i = 0; i < ids.Count; i++) Console.WriteLine($"{ids[i],6}  {pieces[i]}");
        return 0;
    }

    private static async Task<int> ConvertAsync(Args a, CancellationToken ct)
    {
        var outDir = a.Get("out") ?? throw new ArgumentException("convert needs --out");
        var dtype = LoadOptions(a).DType;
        var manifest = await MiniGptConverter.ConvertAsync(a.Get("model")!, outDir, dtype, ProgressPrinter(), ct);
        Console.WriteLine($"wrote {manifest}");
        return 0;
    }
}

/// <summary>Tiny argument parser: --name value, repeated options, and flags.</summary>
internal sealed class Args
{
    private static readonly HashSet<string> Flags = new() { "no-template-stops", "raw", "no-bos" };
    private readonly Dictionary<string, List<string>> _values = new();

    public static Args Parse(string[] args)
    {
        var a = new Args();
        for (var i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal)) throw new ArgumentException($"unexpected argument '{args[i]}'");
            var name = args[i][2..];
            if (Flags.Contains(name)) { a.Add(name, "true"); continue; }
            if (i + 1 >= args.Length) throw new ArgumentException($"--{name} needs a value");
            a.Add(name, args[++i]);
        }
        return a;
    }

    private void Add(string k, string v)
    {
        if (!_values.TryGetValue(k, out var list)) _values[k] = list = new List<string>();
        list.Add(v);
    }

    public bool Has(string k) => _values.ContainsKey(k);
    public string? Get(string k) => _values.TryGetValue(k, out var v) ? v[^1] : null;
    public IReadOnlyList<string> GetAll(string k) => _values.TryGetValue(k, out var v) ? v : Array.Empty<string>();
    public int? GetInt(string k) => Get(k) is { } s ? int.TryParse(s, out var v) ? v : throw new ArgumentException($"--{k} expects an integer, got '{s}'") : null;
    public long? GetLong(string k) => Get(k) is { } s ? long.TryParse(s, out var v) ? v : throw new ArgumentException($"--{k} expects an integer, got '{s}'") : null;
    public float? GetFloat(string k) => Get(k) is { } s ? float.TryParse(s, System.Globalization.CultureInfo.InvariantCulture, out var v) ? v : throw new ArgumentException($"--{k} expects a number, got '{s}'") : null;
}
