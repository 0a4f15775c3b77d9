using TorchSharp;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>The SwiGLU feed-forward block: <c>down(silu(gate(x)) ⊙ up(x))</c>, keys <c>mlp.{gate,up,down}_proj.weight</c>.</summary>
internal sealed class LlamaMlp : nn.Module<Tensor, Tensor>
{
    private readonly Proj gate_proj, up_proj, down_proj;

    public LlamaMlp(LlamaConfig config, ScalarType dtype, Device device, Quantization.QuantFormat quant = Quantization.QuantFormat.None) : base("mlp")
    {
        gate_proj = new Proj("gate_proj", config.HiddenSize, config.IntermediateSize, dtype, device, quant);
        up_proj = new Proj("up_proj", config.HiddenSize, config.IntermediateSize, dtype, device, quant);
        down_proj = new Proj("down_proj", config.IntermediateSize, config.HiddenSize, dtype, device, quant);
        RegisterComponents();
    }

    /// <summary>The projections <c>gate, up, down</c> (the CPU decode step reads their weights directly).</summary>
    internal (Proj Gate, Proj Up, Proj Down) Projections => (gate_proj, up_proj, down_proj);

    /// <inheritdoc />
    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var hidden = nn.functional.silu(gate_proj.call(x)) * up_proj.call(x);
        return down_proj.call(hidden).MoveToOuterDisposeScope();
    }
}
