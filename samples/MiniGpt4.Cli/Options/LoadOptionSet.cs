using System.CommandLine;

namespace MiniGpt4.Cli.Options;

/// <summary>How a model is loaded (--dtype, --device, --threads, --decoder, --quantize, --convert-float16), mapped to <see cref="MiniGptLoadOptions"/>.</summary>
internal sealed class LoadOptionSet
{
    public Option<MiniGptDType?> DType { get; } = DTypeOption();
    public Option<string?> Device { get; } = CliOption.Text("--device", "cpu, cuda or cuda:N [default: cpu]", "cpu|cuda");
    public Option<int?> Threads { get; } = CliOption.Int("--threads", "Intra-op CPU threads for libtorch [default: libtorch's]");
    public Option<ImageDecoderChoice?> Decoder { get; } = CliOption.Choice("--decoder",
        "Image decoder; skia decodes JPEG bit-exactly like Pillow [default: imagesharp]",
        new Dictionary<string, ImageDecoderChoice> { ["imagesharp"] = ImageDecoderChoice.ImageSharp, ["skia"] = ImageDecoderChoice.Skia });

    public Option<MiniGptQuantization?> Quantize { get; } = CliOption.Choice("--quantize",
        "Quantize the language model's float weights while loading (docs/quantization.md) [default: as stored]",
        new Dictionary<string, MiniGptQuantization> { ["int8"] = MiniGptQuantization.Int8, ["int4"] = MiniGptQuantization.Int4 });

    public Option<bool> ConvertFloat16 { get; } = CliOption.Flag("--convert-float16",
        "Convert float16 weight files to bfloat16 while loading (slower load, faster decode) instead of keeping them as stored");

    /// <summary>Every option, in help order.</summary>
    public IReadOnlyList<Option> All => [DType, Device, Threads, Decoder, Quantize, ConvertFloat16];

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (var o in All) command.Options.Add(o);
    }

    /// <summary>The load options the command line asks for.</summary>
    public MiniGptLoadOptions Read(ParseResult r)
    {
        return Options(r);
    }

    private MiniGptLoadOptions Options(ParseResult r) => new()
    {
        DType = r.GetValue(DType) ?? MiniGptDType.BFloat16,
        Device = r.GetValue(Device) ?? "cpu",
        Threads = r.GetValue(Threads),
        Quantization = r.GetValue(Quantize) ?? MiniGptQuantization.None,
        KeepFloat16Weights = !r.GetValue(ConvertFloat16),
        Images = new ImageDecodingOptions
        {
            Decoder = r.GetValue(Decoder) switch
            {
                ImageDecoderChoice.Skia => MiniGpt4.Imaging.Skia.SkiaImageDecoder.Instance,
                _ => ImageDecodingOptions.Default.Decoder, // ImageSharp, the library default
            },
        },
    };

    /// <summary>--dtype: float32 (fp32), bfloat16 (bf16) or float16 (fp16); null when absent.</summary>
    public static Option<MiniGptDType?> DTypeOption(string description = "Weights and activations dtype; float32 gives the reference's exact numbers [default: bfloat16]") =>
        CliOption.Choice("--dtype", description, new Dictionary<string, MiniGptDType>
        {
            ["float32"] = MiniGptDType.Float32, ["fp32"] = MiniGptDType.Float32,
            ["bfloat16"] = MiniGptDType.BFloat16, ["bf16"] = MiniGptDType.BFloat16,
            ["float16"] = MiniGptDType.Float16, ["fp16"] = MiniGptDType.Float16,
        }, "float32", "bfloat16", "float16");
}

/// <summary>The image decoders --decoder selects.</summary>
internal enum ImageDecoderChoice
{
    ImageSharp,
    Skia,
}
