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
/// <remarks>
/// With a quantized format (<see cref="Quantization.QuantFormat"/>) the layer holds no float weight: its state is the
/// packed rows and scales (keys <c>…_proj.q8_weight</c>/<c>q8_scales</c> or <c>q4_…</c>, see
/// <see cref="Quantization.QuantLayout"/>); the decode step reads them directly and other products (prefill) use a
/// dequantized copy, written into the model's <see cref="Scratch"/> buffer when it has one. With
/// <see cref="Quantization.QuantFormat.F16"/> the weight is the file's float16 matrix (key <c>…_proj.weight</c>), and
/// products read it rounded to the model's bfloat16 the same ways.
/// </remarks>
internal sealed class Proj : nn.Module<Tensor, Tensor>
{
    private readonly Parameter? weight;
    private readonly ScalarType _dtype;

    public Proj(string name, long inFeatures, long outFeatures, ScalarType dtype, Device device,
        Quantization.QuantFormat quant = Quantization.QuantFormat.None) : base(name)
    {
        _dtype = dtype;
        if (quant == Quantization.QuantFormat.None) weight = EmptyInit.Parameter([outFeatures, inFeatures], dtype, device);
        else if (quant == Quantization.QuantFormat.F16)
        {
            if (dtype != ScalarType.BFloat16) throw new ArgumentException($"Float16 weights as stored run in a bfloat16 model, not {dtype}.", nameof(dtype));
            weight = EmptyInit.Parameter([outFeatures, inFeatures], ScalarType.Float16, device);
        }
        else
        {
            Quantized = Quantization.QuantizedWeight.Empty(quant, inFeatures, outFeatures, device);
            register_buffer(Quantization.QuantLayout.WeightName(quant), Quantized.Packed);
            register_buffer(Quantization.QuantLayout.ScalesName(quant), Quantized.Scales);
        }
        RegisterComponents();
    }

    /// <summary>The packed weight, or null when the weight is a float matrix (<see cref="Weight"/>).</summary>
    public Quantization.QuantizedWeight? Quantized { get; }

    /// <summary>The weight matrix <c>[out, in]</c> (float layers only: the model's dtype, or float16 as stored).</summary>
    public Tensor Weight => weight ?? throw new InvalidOperationException($"{GetName()} holds a {Quantized!.Format} quantized weight, not a float matrix.");

    /// <summary>The kernel that computes the product (default: <see cref="TorchLinearKernel"/>).</summary>
    public ILinearKernel Kernel { get; set; } = TorchLinearKernel.Instance;

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        if (weight is not null && weight.dtype == _dtype) return Product(Kernel, x, weight);
        // Not when autograd records the product: it would keep the buffer that the next projection overwrites.
        if (Scratch is not null && _dtype == ScalarType.BFloat16 && x.device_type == DeviceType.CPU && (weight ?? Quantized!.Packed).device_type == DeviceType.CPU
            && !(is_grad_enabled() && x.requires_grad))
        {
            using var reused = weight is not null ? Scratch.For(weight.shape[0], weight.shape[1]) : Scratch.For(Quantized!.OutFeatures, Quantized.InFeatures);
            if (weight is not null) Runtime.HalfRounding.Round(weight, reused);
            else Quantized!.DequantizeInto(reused);
            return Product(Kernel, x, reused);
        }
        using var dense = weight is not null ? Runtime.HalfRounding.Rounded(weight) : Quantized!.Dequantize(_dtype);
        return Product(Kernel, x, dense);
    }

    /// <summary>
    /// The model's buffer that a quantized weight is dequantized into for a product (null: a new tensor per call). Set
    /// by the owning <see cref="LlamaForCausalLM"/>, whose products run one at a time.
    /// </summary>
    internal Runtime.Bf16Scratch? Scratch { get; set; }

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
