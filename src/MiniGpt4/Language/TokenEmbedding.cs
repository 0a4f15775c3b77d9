using MiniGpt4.Weights;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace MiniGpt4.Language;

/// <summary>The token embedding table <c>weight [vocab, hidden]</c>, allocated uninitialised (the loader fills it).</summary>
internal sealed class TokenEmbedding : nn.Module<Tensor, Tensor>
{
    private readonly Parameter weight;

    public TokenEmbedding(string name, long vocab, long hidden, ScalarType dtype, Device device) : base(name)
    {
        weight = EmptyInit.Parameter([vocab, hidden], dtype, device);
        RegisterComponents();
    }

    /// <summary>The table <c>[vocab, hidden]</c> (also the output projection when embeddings are tied).</summary>
    public Tensor Weight => weight;

    /// <summary>Looks up int64 ids of any shape; returns <c>[..., hidden]</c>. Ids must be in range (checked by the caller).</summary>
    public override Tensor forward(Tensor ids) => weight[ids];
}
