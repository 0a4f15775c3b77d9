using MiniGpt4.Weights;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Vision;

/// <summary>Non-overlapping patch projection: Conv2d(3, W, kernel = stride = patch) -> [B, N, W], row-major patches.</summary>
internal sealed class PatchEmbed : nn.Module<Tensor, Tensor>
{
    private readonly Conv2d proj;

    public PatchEmbed(int patchSize, int width, ScalarType dtype, Device device) : base(nameof(PatchEmbed))
    {
        proj = EmptyInit.Conv2d(3, width, patchSize, patchSize, hasBias: true, dtype, device);
        RegisterComponents();
    }

    public override Tensor forward(Tensor pixels) => proj.call(pixels).flatten(2).transpose(1, 2);
}
