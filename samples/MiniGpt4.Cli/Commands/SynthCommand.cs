using System.CommandLine;
using MiniGpt4.Cli.Options;
using MiniGpt4.Cli.Synth;

namespace MiniGpt4.Cli.Commands;

/// <summary>
/// <c>synth</c>: a MiniGPT-4 with random weights at a release's shapes and in its file layouts, for measuring
/// load, memory and speed without the real downloads. See <see cref="ModelSynthesizer"/>.
/// </summary>
internal sealed class SynthCommand : Command
{
    private readonly Option<string?> _preset = CliOption.Word("--preset",
        "The release to imitate (shapes, file names, manifest variant)", SynthPreset.All.Select(p => p.Name).ToArray(), required: true);
    private readonly Option<string?> _out = CliOption.Text("--out", "The folder to write (created if missing)", "DIR", required: true);
    private readonly Option<int?> _layers = CliOption.Int("--layers", "Language-model blocks [default: the release's, 32 or 40]");
    private readonly Option<int?> _visionLayers = CliOption.Int("--vision-layers",
        $"EVA-ViT-g blocks to store [default: {EvaVitG.StoredBlocks} as released, of which {EvaVitG.UsedBlocks} are used]");
    private readonly Option<bool> _llmOnly = CliOption.Flag("--llm-only",
        "Write only the language model: --out becomes a Hugging Face LLaMA folder (with a language-model-only minigpt4.json)");
    private readonly Option<SynthDType?> _dtype = CliOption.Choice("--dtype", "Element type of the files [default: float16, as released]",
        new Dictionary<string, SynthDType>
        {
            ["float16"] = SynthDType.Float16, ["fp16"] = SynthDType.Float16, ["bfloat16"] = SynthDType.BFloat16, ["bf16"] = SynthDType.BFloat16,
            ["float32"] = SynthDType.Float32, ["fp32"] = SynthDType.Float32,
        }, "float16", "bfloat16", "float32");
    private readonly Option<long?> _seed = CliOption.Long("--seed", "Random seed; the same seed writes the same bytes [default: 0]", "S");
    private readonly Option<string?> _tokenizer = CliOption.Text("--tokenizer",
        "A real LLaMA tokenizer.model to copy into the model [default: write a synthetic 32000-piece one]", "FILE");
    private readonly Option<int?> _shardMb = CliOption.Int("--shard-mb", "Largest safetensors shard in MB [default: 5000, as save_pretrained]", "MB");

    public SynthCommand() : base("synth",
        "Write a MiniGPT-4 with random weights at a release's shapes, in the files and layouts the real downloads use " +
        "(eva_vit_g.pth, blip2_pretrained_flant5xxl.pth, the stage-2 .pth, a Hugging Face LLaMA folder) plus its minigpt4.json. " +
        "Streamed to disk; deterministic for a seed; progress on stderr; prints the manifest's path.")
    {
        Options.Add(_preset);
        Options.Add(_out);
        Options.Add(_layers);
        Options.Add(_visionLayers);
        Options.Add(_llmOnly);
        Options.Add(_dtype);
        Options.Add(_seed);
        Options.Add(_tokenizer);
        Options.Add(_shardMb);
        CliOption.Range(_layers, 1, 200);
        CliOption.Range(_visionLayers, 1, EvaVitG.StoredBlocks);
        CliOption.Range(_shardMb, 1, 1_000_000);
        CliOption.Seed(_seed);
        _tokenizer.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<string?>() is { } f && !File.Exists(f)) r.AddError($"invalid value for --tokenizer: '{f}' does not exist");
        });
        SetAction((r, ct) =>
        {
            var request = new SynthRequest(
                SynthPreset.Get(r.GetValue(_preset)!), r.GetValue(_out)!, r.GetValue(_layers), r.GetValue(_visionLayers), r.GetValue(_llmOnly),
                r.GetValue(_dtype) ?? SynthDType.Float16, (ulong)(r.GetValue(_seed) ?? 0), r.GetValue(_tokenizer),
                (r.GetValue(_shardMb) ?? 5000) * 1_000_000L);
            try
            {
                Console.WriteLine(ModelSynthesizer.Write(request, Console.Error, ct));
                return Task.FromResult(ExitCodes.Ok);
            }
            catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"error: cannot write the model to '{request.OutputFolder}': {ex.Message}");
                return Task.FromResult(ExitCodes.Error);
            }
        });
    }
}
