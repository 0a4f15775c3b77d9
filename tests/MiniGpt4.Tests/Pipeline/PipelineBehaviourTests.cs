using System.Reflection;
using Microsoft.Extensions.DependencyInjection;
using MiniGpt4.Abstractions;
using MiniGpt4.Hosting;
using MiniGpt4.Models;
using MiniGpt4.Tests.Support;
using TorchSharp;
using Xunit;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>What a .NET user relies on beyond parity: streaming, errors, cancellation, truncation, DI, no leaks.</summary>
public class PipelineBehaviourTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    private const string Question = "Describe this image in detail.";

    private static ImageInput ImageA => ImageInput.FromFile(Oracle.Image("a_gradient_shapes_640x480.png"));

    private static GenerationOptions Greedy20 => GenerationOptions.Greedy with { MaxNewTokens = 20, UseTemplateStops = false };

    private static JsonRun RefRun(string variant = "vicuna0") =>
        new(Oracle.Reference["variants"]![variant]!["chat"]!["a_gradient_shapes_640x480.png"]!["runs"]!["rp_1.0"]!);

    private sealed record JsonRun(System.Text.Json.Nodes.JsonNode Node)
    {
        public int[] Ids => Oracle.Ints(Node["generated_ids"]);
        public string Answer => Node["chat_answer_text"]!.GetValue<string>();
    }

    [SkippableFact]
    public async Task Streamed_deltas_concatenate_to_the_answer()
    {
        var p = tiny.Get("vicuna0");
        using var s = p.CreateSession();
        s.AddImage(ImageA);
        var text = "";
        await foreach (var d in s.StreamAsync(Question, Greedy20)) text += d;
        Assert.Equal(s.LastResponse!.RawText, text);
        Assert.Equal(RefRun().Ids, s.LastResponse.TokenIds);
    }

    [SkippableTheory]
    [InlineData("truncated")]
    [InlineData("garbage")]
    [InlineData("empty")]
    public async Task A_bad_image_throws_a_typed_exception_and_the_pipeline_stays_usable(string kind)
    {
        var p = tiny.Get("vicuna0");
        var png = File.ReadAllBytes(Oracle.Image("a_gradient_shapes_640x480.png"));
        var bad = kind switch
        {
            "truncated" => png[..(png.Length / 2)],
            "garbage" => System.Text.Encoding.ASCII.GetBytes("this is not an image at all"),
            _ => Array.Empty<byte>(),
        };
        using (var s = p.CreateSession())
        {
            Assert.ThrowsAny<MiniGptImageException>(() => s.AddImage(ImageInput.FromBytes(bad)));
            Assert.Empty(s.History);
        }
        var ok = await p.AskAsync(ImageA, Question, Greedy20);
        Assert.Equal(RefRun().Ids, ok.TokenIds);
    }

    [SkippableFact]
    public async Task Cancelling_mid_stream_throws_and_leaves_the_session_as_it_was()
    {
        var p = tiny.Get("vicuna0");
        using var s = p.CreateSession();
        s.AddImage(ImageA);
        var history = s.History;
        using var cts = new CancellationTokenSource();
        var deltas = 0;
        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var _ in s.StreamAsync(Question, Greedy20, cts.Token))
                if (++deltas == 3) cts.Cancel();
        });
        Assert.Equal(3, deltas); // within one step of the cancellation
        Assert.Null(s.LastResponse);
        Assert.Equal(history, s.History);
        var again = await s.AskAsync(Question, Greedy20);
        Assert.Equal(RefRun().Ids, again.TokenIds);
    }

    [SkippableFact]
    public async Task Long_prompts_are_cut_from_the_left_like_the_reference_and_reported()
    {
        // Chat.answer_prepare: if prompt + max_new_tokens > max_length, embs = embs[:, current - max_length:].
        var p = tiny.Get("vicuna0");
        var chat = Oracle.Reference["variants"]!["vicuna0"]!["chat"]!["a_gradient_shapes_640x480.png"]!;
        var r = await p.AskAsync(ImageA, Question, Greedy20 with { MaxContextLength = 100, TruncatePromptFromLeft = true });
        Assert.Equal(10, r.Usage.TruncatedPromptTokens);           // 90 + 20 - 100
        Assert.Equal(80, r.Usage.PromptTokens);
        // First principles: the first logits equal the language model run on the oracle's embeddings minus 10 rows.
        var lm = (LlamaLanguageModel)p.LanguageModel;
        using var scope = torch.NewDisposeScope();
        using var inference = torch.inference_mode();
        using var session = lm.Model.CreateSession(200);
        var x = Oracle.Tensor(chat["input_embeds"]!.GetValue<string>())[10..].unsqueeze(0);
        var expected = Tensors.ToFloats(session.Prefill(x));
        Assert.True(Oracle.MaxAbsDiff(expected, tiny.LastPrefill["vicuna0"].Logits) <= 1e-5);
    }

    [SkippableFact]
    public async Task Long_prompts_are_refused_by_default_instead_of_losing_the_image()
    {
        var p = tiny.Get("vicuna0");
        var ex = await Assert.ThrowsAsync<MiniGptContextLengthException>(() => p.AskAsync(ImageA, Question, Greedy20 with { MaxContextLength = 100 }));
        Assert.Equal(90, ex.PromptTokens);
        Assert.Equal(20, ex.MaxNewTokens);
        Assert.Equal(100, ex.ContextLength);
        Assert.Contains("TruncatePromptFromLeft", ex.Message);
    }

    [SkippableFact]
    public async Task A_direct_language_model_call_beyond_its_context_throws()
    {
        var lm = tiny.Get("vicuna0").LanguageModel;
        var prompt = new PromptSequence().AddTokens(Enumerable.Repeat(5, lm.ContextLength - 10).ToArray());
        await Assert.ThrowsAsync<MiniGptContextLengthException>(async () =>
        {
            await foreach (var _ in lm.GenerateAsync(prompt, Greedy20)) { }
        });
    }

    [SkippableFact]
    public async Task Invalid_options_are_rejected_before_any_work()
    {
        var p = tiny.Get("vicuna0");
        await Assert.ThrowsAnyAsync<ArgumentException>(() => p.AskAsync(ImageA, Question, new GenerationOptions { TopP = 0 }));
        await Assert.ThrowsAnyAsync<ArgumentException>(() => p.AskAsync(ImageA, Question, new GenerationOptions { MaxNewTokens = 0 }));
        var ok = await p.AskAsync(ImageA, Question, Greedy20);
        Assert.Equal(RefRun().Ids, ok.TokenIds);
    }

    [SkippableFact]
    public async Task Concurrent_requests_give_the_sequential_answers()
    {
        var p = tiny.Get("llama2");
        var tasks = Enumerable.Range(0, 4).Select(_ => Task.Run(() => p.AskAsync(ImageA, Question, Greedy20))).ToArray();
        var results = await Task.WhenAll(tasks);
        foreach (var r in results) Assert.Equal(RefRun("llama2").Ids, r.TokenIds);
    }

    [SkippableFact]
    public async Task Sampling_with_a_seed_reproduces()
    {
        var p = tiny.Get("vicuna0");
        var o = new GenerationOptions { MaxNewTokens = 15, Seed = 1234 };
        var a = await p.AskAsync(ImageA, Question, o);
        var b = await p.AskAsync(ImageA, Question, o);
        Assert.Equal(a.TokenIds, b.TokenIds);
        Assert.Equal(15, a.TokenIds.Count);
    }

    [SkippableFact]
    public async Task User_stop_strings_end_the_answer_before_the_stop()
    {
        var p = tiny.Get("vicuna0");
        var full = (await p.AskAsync(ImageA, Question, Greedy20)).RawText;
        var stop = full.Substring(6, 3);
        var r = await p.AskAsync(ImageA, Question, Greedy20 with { StopStrings = new[] { stop } });
        Assert.Equal(MiniGptFinishReason.Stop, r.FinishReason);
        Assert.Equal(full[..full.IndexOf(stop, StringComparison.Ordinal)], r.RawText);
    }

    [SkippableFact]
    public async Task Sessions_and_answers_leave_no_live_tensors_behind()
    {
        var p = tiny.Get("vicuna0");
        await p.AskAsync(ImageA, Question, Greedy20); // warm-up
        var before = LiveTensors.Settled();
        for (var i = 0; i < 5; i++)
        {
            using var s = p.CreateSession();
            s.AddImage(ImageA);
            await s.AskAsync(Question, Greedy20);
            await s.AskAsync("What colour is the biggest shape?", Greedy20);
        }
        await p.AskAsync(ImageA, Question, Greedy20 with { NumBeams = 3 });
        Assert.Equal(before, torch.Tensor.TotalCount);
    }

    [Fact]
    public void The_abstractions_and_the_Skia_add_on_do_not_depend_on_TorchSharp_or_the_implementation()
    {
        var abstractions = typeof(ImageInput).Assembly;
        Assert.Equal("MiniGpt4.Abstractions", abstractions.GetName().Name);
        Assert.DoesNotContain(abstractions.GetReferencedAssemblies(), a => a.Name is "TorchSharp" or "MiniGpt4" || a.Name!.StartsWith("SixLabors", StringComparison.Ordinal));
        var skia = typeof(MiniGpt4.Imaging.Skia.SkiaImageDecoder).Assembly;
        Assert.DoesNotContain(skia.GetReferencedAssemblies(), a => a.Name is "TorchSharp" or "MiniGpt4");
        Assert.Contains(skia.GetReferencedAssemblies(), a => a.Name == "MiniGpt4.Abstractions");
        // The implementation references the abstractions and forwards the types that moved there.
        Assert.Same(typeof(ImageInput), Type.GetType("MiniGpt4.ImageInput, MiniGpt4", throwOnError: true));
    }

    [Fact]
    public void No_TorchSharp_type_appears_in_the_public_surface()
    {
        var torchAssembly = typeof(torch).Assembly;
        var offenders = new List<string>();
        foreach (var type in typeof(MiniGptPipeline).Assembly.GetExportedTypes().Concat(typeof(ImageInput).Assembly.GetExportedTypes()))
        {
            IEnumerable<Type> used = new[] { type.BaseType }.Concat(type.GetInterfaces()).Where(t => t is not null)!;
            const BindingFlags flags = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
            foreach (var m in type.GetMembers(flags).Concat(type.GetMembers(BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.DeclaredOnly)
                         .Where(x => x is MethodBase { IsFamily: true } or PropertyInfo { GetMethod.IsFamily: true })))
            {
                var types = m switch
                {
                    MethodBase mb => mb.GetParameters().Select(x => x.ParameterType).Concat(mb is MethodInfo mi ? new[] { mi.ReturnType } : Array.Empty<Type>()),
                    PropertyInfo pi => new[] { pi.PropertyType },
                    FieldInfo fi => new[] { fi.FieldType },
                    EventInfo ei => new[] { ei.EventHandlerType! },
                    _ => Array.Empty<Type>(),
                };
                foreach (var t in types.SelectMany(Flatten))
                    if (t.Assembly == torchAssembly) offenders.Add($"{type.FullName}.{m.Name}: {t.FullName}");
            }
            foreach (var t in used.SelectMany(Flatten))
                if (t.Assembly == torchAssembly) offenders.Add($"{type.FullName} derives from {t.FullName}");
        }
        Assert.Empty(offenders);

        static IEnumerable<Type> Flatten(Type t)
        {
            yield return t;
            if (t.HasElementType) foreach (var x in Flatten(t.GetElementType()!)) yield return x;
            if (t.IsGenericType) foreach (var a in t.GetGenericArguments()) foreach (var x in Flatten(a)) yield return x;
        }
    }

    [SkippableFact]
    public async Task Dependency_injection_registers_a_singleton_the_container_disposes()
    {
        var manifest = Fixtures.Require("oracle/tiny/minigpt4-llama2.json");
        var services = new ServiceCollection();
        services.AddMiniGpt4(o => { o.ModelPath = manifest; o.Load = TinyPipelines.Float32Exact; });
        MiniGptPipeline pipeline;
        await using (var sp = services.BuildServiceProvider())
        {
            pipeline = sp.GetRequiredService<MiniGptPipeline>();
            Assert.Same(pipeline, sp.GetRequiredService<MiniGptPipeline>());
            var r = await pipeline.AskAsync(ImageA, Question, Greedy20);
            Assert.Equal(RefRun("llama2").Ids, r.TokenIds);
        }
        Assert.Throws<ObjectDisposedException>(() => pipeline.CreateSession());
    }

    [Fact]
    public void Dependency_injection_requires_a_model_path()
    {
        var ex = Assert.Throws<MiniGptConfigurationException>(() => new ServiceCollection().AddMiniGpt4(_ => { }));
        Assert.Contains("ModelPath", ex.Message);
    }

    [SkippableFact]
    public async Task A_manifest_pointing_at_a_missing_file_names_it()
    {
        using var tmp = new TempDir();
        var llama = Fixtures.Require("oracle/tiny/llama");
        var vision = new System.Text.Json.Nodes.JsonObject { ["checkpoint"] = "nope.pth", ["width"] = 32, ["depth"] = 2, ["heads"] = 4, ["mlp_hidden"] = 139 };
        File.WriteAllText(tmp.File("minigpt4.json"), new System.Text.Json.Nodes.JsonObject
        {
            ["variant"] = "minigpt4-llama2", ["vision"] = vision, ["llm"] = new System.Text.Json.Nodes.JsonObject { ["path"] = llama },
        }.ToJsonString());
        var ex = await Assert.ThrowsAsync<MiniGptConfigurationException>(() => MiniGptPipeline.LoadAsync(tmp.Path));
        Assert.Contains("nope.pth", ex.Message);
        Assert.Contains("vision.checkpoint", ex.Message);
    }

    [SkippableFact]
    public async Task A_projection_from_another_model_is_refused_naming_the_key()
    {
        using var tmp = new TempDir();
        var tiny = Path.GetDirectoryName(Fixtures.Require("oracle/tiny/minigpt4-llama2.json"))!;
        // The Vicuna-v0 stage-2 file (48 -> 64) in the Llama-2 variant (expects 4*32 = 128 inputs).
        var vision = new System.Text.Json.Nodes.JsonObject { ["checkpoint"] = tiny + "/eva_vit_g.pth", ["width"] = 32, ["depth"] = 2, ["heads"] = 4, ["mlp_hidden"] = 139 };
        File.WriteAllText(tmp.File("minigpt4.json"), new System.Text.Json.Nodes.JsonObject
        {
            ["variant"] = "minigpt4-llama2", ["vision"] = vision,
            ["projection"] = new System.Text.Json.Nodes.JsonObject { ["checkpoint"] = tiny + "/pretrained_minigpt4.pth" },
            ["llm"] = new System.Text.Json.Nodes.JsonObject { ["path"] = tiny + "/llama" },
        }.ToJsonString());
        var ex = await Assert.ThrowsAsync<MiniGptWeightsException>(() => MiniGptPipeline.LoadAsync(tmp.Path, TinyPipelines.Float32Exact));
        Assert.Equal("llama_proj.weight", ex.Key);
        Assert.Contains("pretrained_minigpt4.pth", ex.Message);
    }
}

public class TemplateStopTests
{
    [SkippableFact]
    public void Demo_stop_ids_are_the_hash_pieces_of_the_real_llama_vocabulary()
    {
        // The reference hard-codes [835] and [2277, 29937]; they are these pieces in LLaMA's tokenizer.model.
        var tok = MiniGptTokenizer.Load(Fixtures.Require("assets/llama-tokenizer.model"));
        Assert.Equal("\u2581###", tok.Piece(835));
        Assert.Equal("##", tok.Piece(2277));
        Assert.Equal("#", tok.Piece(29937));
    }

    [SkippableFact]
    public void Separator_stops_found_from_the_tokenizer_pieces_are_the_demo_ids_for_llama()
    {
        var tok = MiniGpt4.Text.LlamaTextTokenizer.FromFile(Fixtures.Require("assets/llama-tokenizer.model"));
        var stops = MiniGpt4.Prompting.SeparatorStops.For(tok);
        Assert.Equal(new[] { new[] { 835 }, new[] { 2277, 29937 } }, stops.Select(s => s.ToArray()).ToArray());
    }
}

public class AbandonedStreamTests : IClassFixture<TinyPipelines>
{
    private readonly TinyPipelines _tiny;

    public AbandonedStreamTests(TinyPipelines tiny) => _tiny = tiny;

    [SkippableFact]
    public async Task Breaking_out_of_a_stream_frees_everything_and_keeps_the_session_usable()
    {
        var p = _tiny.Get("vicuna0");
        var image = ImageInput.FromFile(Fixtures.Require("oracle/images/a_gradient_shapes_640x480.png"));
        var options = GenerationOptions.Greedy with { MaxNewTokens = 20, UseTemplateStops = false };
        await p.AskAsync(image, "Describe this image in detail.", options); // warm-up
        var before = LiveTensors.Settled();
        using (var s = p.CreateSession())
        {
            s.AddImage(image);
            await foreach (var _ in s.StreamAsync("Describe this image in detail.", options)) break;
            Assert.Single(s.History); // the abandoned turn is not part of the conversation
            var r = await s.AskAsync("Describe this image in detail.", options);
            var expected = Oracle.Ints(Oracle.Reference["variants"]!["vicuna0"]!["chat"]!["a_gradient_shapes_640x480.png"]!["runs"]!["rp_1.0"]!["generated_ids"]);
            Assert.Equal(expected, r.TokenIds);
        }
        Assert.Equal(before, torch.Tensor.TotalCount);
    }

    [SkippableFact]
    public async Task Cancelling_before_the_start_throws_OperationCanceledException()
    {
        var p = _tiny.Get("vicuna0");
        using var cts = new CancellationTokenSource();
        cts.Cancel();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() =>
            p.AskAsync(ImageInput.FromFile(Fixtures.Require("oracle/images/a_gradient_shapes_640x480.png")), "Hi", GenerationOptions.Greedy, cts.Token));
    }
}

/// <summary>Components are replaceable through the public interfaces and plain arrays alone.</summary>
public class ReplaceableComponentTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    /// <summary>A vision encoder of "our own": it returns the oracle's EVA output for image a.</summary>
    private sealed class RecordedVisionEncoder : IVisionEncoder
    {
        public int ImageSize => 224;
        public int Calls { get; private set; }

        public VisionFeatures Encode(ImageInput image, CancellationToken cancellationToken = default)
        {
            Calls++;
            var vit = Oracle.Array(Oracle.Reference["variants"]!["vicuna0"]!["encode"]!["a_gradient_shapes_640x480.png"]!["files"]!["vit_out"]!.GetValue<string>());
            return VisionFeatures.FromArray(vit.ToFloat(), (int)vit.Shape[1], (int)vit.Shape[2]);
        }

        public void Dispose() { }
    }

    [SkippableFact]
    public async Task A_custom_vision_encoder_plugs_into_the_real_projector_and_language_model()
    {
        var loaded = tiny.Get("vicuna0");
        var encoder = new RecordedVisionEncoder();
        using var composed = new MiniGptPipeline(ModelVariant.MiniGpt4Vicuna0, encoder, loaded.Projector, loaded.LanguageModel, ownsComponents: false);
        var chat = Oracle.Reference["variants"]!["vicuna0"]!["chat"]!["a_gradient_shapes_640x480.png"]!;
        var r = await composed.AskAsync(ImageInput.FromRgb(1, 1, new byte[3]), chat["question"]!.GetValue<string>(),
            GenerationOptions.Greedy with { MaxNewTokens = 20, UseTemplateStops = false });
        Assert.Equal(1, encoder.Calls);
        Assert.Equal(Oracle.Ints(chat["runs"]!["rp_1.0"]!["generated_ids"]), r.TokenIds);
        Assert.Equal(chat["runs"]!["rp_1.0"]!["chat_answer_text"]!.GetValue<string>(), r.Text);
    }

    [Fact]
    public void Handles_from_arrays_check_their_shape()
    {
        Assert.Throws<ArgumentException>(() => ImageEmbeddings.FromArray(new float[10], 3, 4));
        using var e = ImageEmbeddings.FromArray(new float[12], 3, 4);
        Assert.Equal(new long[] { 1, 3, 4 }, e.Shape);
        Assert.Equal(3, e.TokenCount);
        Assert.Equal(new float[12], e.ToArray());
    }
}
