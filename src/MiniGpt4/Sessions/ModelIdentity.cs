using System.Security.Cryptography;
using System.Text;
using MiniGpt4.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Sessions;

/// <summary>
/// What a saved conversation is bound to: the variant and shapes (<see cref="Description"/>) and a SHA-256
/// <see cref="Digest"/> over them, the tokenizer's ids for a probe text, and a sample of every weight of the
/// library's own components (each parameter's name, shape and its first and last 16 values rounded to bfloat16,
/// so the same checkpoint loaded in float32 or bfloat16 is the same model). Components of your own contribute
/// their shapes and tokenizer only. Computed once per pipeline, on the first save or restore.
/// </summary>
internal sealed record ModelIdentity(string Description, string Digest)
{
    private const string Probe = "Hello ###Human: <Img></Img> [INST] <s></s> 0123 ÄÖÜ 中文";

    public override string ToString() => $"{Description} [{Digest[..16]}]";

    public static ModelIdentity Of(MiniGptPipeline pipeline)
    {
        var lm = pipeline.LanguageModel;
        var description = $"{pipeline.Preset.Name}: vocabulary {lm.VocabSize}, hidden {lm.HiddenSize}"
            + (pipeline.Projector is { } projector ? $", {projector.TokensPerImage} tokens per image" : ", text only")
            + (pipeline.VisionEncoder is { } vision ? $", {vision.ImageSize} px" : "");
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        Add(hash, description);
        Add(hash, string.Join(",", lm.Tokenize(Probe, addBos: true)) + $"|{lm.BeginningOfSequenceId}|{lm.EndOfSequenceId}");
        if (lm is LlamaLanguageModel llama) AddWeights(hash, "llm", llama.Model);
        if (pipeline.VisionEncoder is EvaVisionEncoder eva) AddWeights(hash, "vision", eva.Module);
        if (pipeline.Projector is VisionProjector vp) AddWeights(hash, "projector", vp.Module);
        return new ModelIdentity(description, Convert.ToHexString(hash.GetHashAndReset()));
    }

    private static void Add(IncrementalHash hash, string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        hash.AppendData(BitConverter.GetBytes(bytes.Length));
        hash.AppendData(bytes);
    }

    private static void AddWeights(IncrementalHash hash, string part, nn.Module module)
    {
        using var scope = NewDisposeScope();
        using var guard = inference_mode();
        foreach (var (name, parameter) in module.named_parameters())
        {
            Add(hash, $"{part}.{name}[{string.Join(",", parameter.shape)}]");
            var flat = parameter.detach().flatten();
            var n = flat.shape[0];
            if (n == 0) continue;
            var k = Math.Min(n, 16);
            var sample = cat([flat.narrow(0, 0, k), flat.narrow(0, n - k, k)], 0)
                .to(ScalarType.BFloat16).to(ScalarType.Float32).cpu().contiguous();
            hash.AppendData(sample.bytes);
        }
    }
}
