using System.Runtime.CompilerServices;
using MiniGpt4.Language;
using MiniGpt4.Language.Kernels;
using MiniGpt4.Language.Quantization;
using MiniGpt4.Tests.Support;
using Xunit;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Language.Kernels;

/// <summary>The load-time warm-up of the decode path (<see cref="DecoderWarmup"/>): every kind of model, nothing left behind, once per kind.</summary>
public sealed class DecoderWarmupTests
{
    [SkippableTheory]
    [InlineData(ScalarType.Float32, null)]
    [InlineData(ScalarType.BFloat16, null)]
    [InlineData(ScalarType.BFloat16, "q8")]
    [InlineData(ScalarType.BFloat16, "q4")]
    public void Warming_decodes_a_tiny_model_of_the_same_kind_and_leaves_no_tensor(ScalarType dtype, string? format)
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the decoder needs AVX-512F or AVX2 + FMA");
        var quantization = format switch { "q8" => LlamaQuantization.For(QuantFormat.Q8), "q4" => LlamaQuantization.For(QuantFormat.Q4), _ => null };
        // Disposing a TorchSharp module leaves its parameters' handles to the finalizer; count that part separately.
        var before = LiveTensors.Settled();
        BuildAndDispose(dtype, quantization);
        var moduleOnly = LiveTensors.Settled() - before;
        before = LiveTensors.Settled();
        DecoderWarmup.Warm(dtype, quantization);
        Assert.Equal(moduleOnly, LiveTensors.Settled() - before); // the session, prefill and steps leave nothing
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void BuildAndDispose(ScalarType dtype, LlamaQuantization? quantization) =>
        new LlamaForCausalLM(DecoderWarmup.Config, dtype, CPU, quantization).Dispose();

    [SkippableFact]
    public void A_kind_of_model_is_warmed_once_per_process()
    {
        Skip.IfNot(CpuGemvKernel.IsSupported, "the decoder needs AVX-512F or AVX2 + FMA");
        var config = new LlamaConfig(HiddenSize: 64, IntermediateSize: 128, NumHiddenLayers: 1, NumAttentionHeads: 4, NumKeyValueHeads: 4,
            RmsNormEps: 1e-6, RopeTheta: 10000, MaxPositionEmbeddings: 32, VocabSize: 32, TieWordEmbeddings: false);
        using var lm = new LlamaForCausalLM(config, ScalarType.Float32, CPU);
        DecoderWarmup.Run(lm); // may have run already for an earlier float32 model of this process
        Assert.False(DecoderWarmup.Run(lm));
    }
}
