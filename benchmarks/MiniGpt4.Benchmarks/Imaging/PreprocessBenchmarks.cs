using BenchmarkDotNet.Attributes;
using MiniGpt4.Imaging;
using SixLabors.ImageSharp;
using SixLabors.ImageSharp.Formats.Png;
using SixLabors.ImageSharp.PixelFormats;

namespace MiniGpt4.Benchmarks.Imaging;

/// <summary>
/// Decode + Pillow-exact bicubic resize + CLIP normalisation of a 640x480 PNG to 224 and 448, and the
/// resize alone. Uses the oracle's image a (../shared/oracle/images or $MINIGPT4_SHARED) when present,
/// else a synthetic 640x480 PNG. Run: dotnet run -c Release --project benchmarks/MiniGpt4.Benchmarks -- --filter '*Preprocess*'
/// </summary>
[MemoryDiagnoser]
public class PreprocessBenchmarks
{
    private byte[] _png = [];
    private DecodedImage _decoded = null!;

    [Params(224, 448)]
    public int Size { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _png = FindOracleImage() is { } path ? File.ReadAllBytes(path) : SyntheticPng();
        _decoded = ImagePreprocessor.Decode(ImageInput.FromBytes(_png), ImageDecodingOptions.Default);
    }

    [Benchmark(Description = "decode+resize+normalise")]
    public float DecodeResizeNormalise() => ImagePreprocessor.ToPixelValues(ImageInput.FromBytes(_png), Size, ImageDecodingOptions.Default)[0];

    [Benchmark(Description = "resize+normalise (RGB input)")]
    public float ResizeNormalise()
        => ImagePreprocessor.ToPixelValues(ImageInput.FromRgb(_decoded.Width, _decoded.Height, _decoded.Rgb24), Size, ImageDecodingOptions.Default)[0];

    [Benchmark(Description = "resize only")]
    public byte ResizeOnly() => ImagePreprocessor.ResizeBicubic(_decoded, Size, Size)[0];

    private static string? FindOracleImage()
    {
        var env = Environment.GetEnvironmentVariable("MINIGPT4_SHARED");
        var roots = new List<string>();
        if (!string.IsNullOrEmpty(env)) roots.Add(env);
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "MiniGpt4.sln")) && dir.Parent is not null)
                roots.Add(Path.Combine(dir.Parent.FullName, "shared"));
        return roots.Select(r => Path.Combine(r, "oracle", "images", "a_gradient_shapes_640x480.png")).FirstOrDefault(File.Exists);
    }

    private static byte[] SyntheticPng()
    {
        using var image = new Image<Rgb24>(640, 480);
        for (int y = 0; y < 480; y++)
            for (int x = 0; x < 640; x++)
                image[x, y] = new Rgb24((byte)(x * 255 / 639), (byte)(y * 255 / 479), (byte)((x ^ y) & 0xFF));
        using var ms = new MemoryStream();
        image.Save(ms, new PngEncoder());
        return ms.ToArray();
    }
}
