using MiniGpt4.Bridge;
using MiniGpt4.Language;
using MiniGpt4.Vision;
using MiniGpt4.Runtime;
using MiniGpt4.Tests.Support;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>
/// TorchSharp 0.107 passes temporary Scalars to native code without keeping them alive, so a garbage
/// collection at the wrong moment aborts the process (src/MiniGpt4/Runtime/TensorMath.cs). The per-token
/// building blocks run here in a tight loop while another thread forces collections non-stop; with the
/// former code (x.pow(2) + eps, x + y) this loop aborted the test host within seconds.
/// </summary>
public class GcPressureTests(ITestOutputHelper output)
{
    [Fact]
    public async Task Per_token_building_blocks_survive_constant_garbage_collections()
    {
        using var norm = new RmsNorm("norm", 64, 1e-6, ScalarType.Float32, CPU);
        using (no_grad()) norm.named_parameters().Single().parameter.fill_(1.ToScalar());
        using var x = randn(1, 4, 64);
        using var cos = randn(4, 64);
        using var sin = randn(4, 64);
        var iterations = 100 * await GcPressure.RunAsync(TimeSpan.FromSeconds(6), () =>
        {
            using var scope = NewDisposeScope();
            for (var i = 0; i < 100; i++)
            {
                var h = norm.call(x);
                var r = RotaryEmbedding.Apply(h, cos, sin);
                _ = r.Plus(x);
            }
        });
        output.WriteLine($"{iterations} iterations under constant collections");
        Assert.True(iterations > 0);
    }
}

/// <summary>Whole modules (ViT, Q-Former, concat projector, LLaMA prefill and decode) under the same pressure.</summary>
public class GcPressureModuleTests(ITestOutputHelper output)
{
    private static void Randomize(nn.Module m)
    {
        using var _ = no_grad();
        foreach (var (_, p) in m.named_parameters()) p.uniform_(-0.1, 0.1);
    }

    [Fact]
    public async Task Model_forwards_survive_constant_garbage_collections()
    {
        var f32 = ScalarType.Float32;
        var vc = new VisionConfig(ImageSize: 28, PatchSize: 14, Width: 16, Depth: 2, Heads: 2, MlpHidden: 24);
        using var vit = new EvaVisionTransformer(vc, f32, CPU);
        using var qformer = new QFormerProjector(new QFormerConfig(Hidden: 24, Layers: 2, Heads: 2, Intermediate: 40, NumQueryTokens: 4, EncoderWidth: 16), 32, f32, CPU);
        using var concat = new ConcatProjector(16, 4, 4, 32, f32, CPU);
        var lc = new LlamaConfig(HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 2, NumAttentionHeads: 4, NumKeyValueHeads: 2,
            RmsNormEps: 1e-6, RopeTheta: 10000, MaxPositionEmbeddings: 64, VocabSize: 50, TieWordEmbeddings: false);
        using var llm = new LlamaForCausalLM(lc, f32, CPU);
        foreach (var m in new nn.Module[] { vit, qformer, concat, llm }) Randomize(m);
        using var pixels = randn(1, 3, 28, 28);

        var rounds = await GcPressure.RunAsync(TimeSpan.FromSeconds(6), () =>
        {
            using var scope = NewDisposeScope();
            using var inference = inference_mode();
            var tokens = vit.call(pixels);
            var embeds = qformer.Project(tokens);
            concat.Project(tokens);
            using var session = llm.CreateSession(16);
            session.Prefill(embeds[0]);
            for (var i = 0; i < 4; i++) session.Step([i + 3]);
        });
        output.WriteLine($"{rounds} rounds under constant collections");
        Assert.True(rounds > 0);
    }
}
