using MiniGpt4.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>
/// How a bias-free projection <c>y = x · Wᵀ</c> is computed: the seam for a dedicated decode-time CPU kernel. A kernel
/// need not be differentiable: <see cref="Proj.Product"/> hands every product autograd records to libtorch.
/// </summary>
internal interface ILinearKernel
{
    /// <summary>Returns <c>x · weightᵀ</c>; <paramref name="x"/> is <c>[..., in]</c>, <paramref name="weight"/> <c>[out, in]</c>.</summary>
    Tensor Forward(Tensor x, Tensor weight);
}

/// <summary>The default kernel: libtorch's <c>linear</c>.</summary>
internal sealed class TorchLinearKernel : ILinearKernel
{
    public static readonly TorchLinearKernel Instance = new();

    /// <inheritdoc />
    public Tensor Forward(Tensor x, Tensor weight) => nn.functional.linear(x, weight);
}

/// <summary>
/// A bias-free linear layer whose only state is <c>weight [out, in]</c> (key <c>…_proj.weight</c>),
/// allocated uninitialised: the loader fills it.
/// </summary>
internal sealed class Proj : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    public Proj(string name, long inFeatures, long outFeatures, ScalarType dtype, Device device) : base(name)
    {
        weight = EmptyInit.Parameter([outFeatures, inFeatures], dtype, device);
        RegisterComponents();
    }

    /// <summary>The weight matrix <c>[out, in]</c>.</summary>
    public Tensor Weight => weight;

    /// <summary>The kernel that computes the product (default: <see cref="TorchLinearKernel"/>).</summary>
    public ILinearKernel Kernel { get; set; } = TorchLinearKernel.Instance;

    /// <inheritdoc />
    public override Tensor forward(Tensor x) => Product(Kernel, x, weight);

    /// <summary>
    /// <c>x · weightᵀ</c> through <paramref name="kernel"/>, except when autograd records the product (grad mode on and
    /// <paramref name="x"/> or <paramref name="weight"/> requiring grad): then through libtorch's <c>linear</c>, since a
    /// kernel such as <see cref="Kernels.CpuGemvKernel"/> writes outside the autograd graph and gradients would silently
    /// stop there. The KV-cache path runs under inference mode, so it always gets the kernel.
    /// </summary>
    public static Tensor Product(ILinearKernel kernel, Tensor x, Tensor weight)
        => is_grad_enabled() && (x.requires_grad || weight.requires_grad)
            ? TorchLinearKernel.Instance.Forward(x, weight)
            : kernel.Forward(x, weight);
}
