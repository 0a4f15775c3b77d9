using MiniGpt4.Weights;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

internal sealed partial class LlamaForCausalLM
{
    /// <summary>File keys the model never reads: transformers ≤ 4.30 saved the rotary <c>inv_freq</c> buffers.</summary>
    internal static readonly string[] IgnoredKeys = ["*.rotary_emb.inv_freq"];

    /// <summary>
    /// Loads a Hugging Face LLaMA checkpoint: a folder (<c>config.json</c> + <c>model.safetensors</c>,
    /// <c>pytorch_model.bin</c> or a sharded index) or one weight file beside its <c>config.json</c>.
    /// <c>config.json</c> is checked against sane bounds and then against the weight files' headers
    /// (layer count, every tensor's shape) before the model is allocated, so a hostile or mismatched
    /// configuration costs no memory; every key is validated (shape, presence) before any data is
    /// read; weights are cast to <paramref name="dtype"/> and placed on <paramref name="device"/> tensor by tensor.
    /// </summary>
    public static LlamaForCausalLM Load(string hfFolderOrFile, ScalarType dtype, Device device, IProgress<double>? progress = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(hfFolderOrFile);
        var folder = Directory.Exists(hfFolderOrFile) ? hfFolderOrFile : Path.GetDirectoryName(Path.GetFullPath(hfFolderOrFile))!;
        var config = LlamaConfig.FromFile(folder);
        using var source = WeightFiles.Open(hfFolderOrFile);
        return Load(config, source, dtype, device, progress, Path.Combine(folder, "config.json"));
    }

    /// <summary>
    /// Loads from a weight source whose keys are the HF keys (<c>model.…</c>, <c>lm_head.weight</c>);
    /// use <see cref="WeightSourceExtensions.WithPrefix"/>/<see cref="WeightSourceExtensions.Renamed"/>
    /// for checkpoints that nest the LLM under another prefix. A tied config
    /// (<c>tie_word_embeddings</c>) has no <c>lm_head.weight</c> of its own; a file that still carries
    /// one has it ignored. An untied config needs it. The configuration is checked against the
    /// source's shapes (<see cref="LlamaConfig.CheckAgainst"/>) before anything is allocated;
    /// <paramref name="configFile"/> names the configuration in messages.
    /// </summary>
    public static LlamaForCausalLM Load(LlamaConfig config, IWeightSource source, ScalarType dtype, Device device, IProgress<double>? progress = null,
        string? configFile = null)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(source);
        config.CheckAgainst(source, configFile);
        var lm = new LlamaForCausalLM(config, dtype, device);
        try
        {
            var rules = new LoadRules
            {
                Ignore = config.TieWordEmbeddings ? [.. IgnoredKeys, "lm_head.weight"] : IgnoredKeys,
                DType = dtype,
                Device = device,
            };
            ModuleLoader.Load(lm, source, rules, progress);
            return lm;
        }
        catch
        {
            lm.Dispose();
            throw;
        }
    }
}
