using System.IO.Compression;
using MiniGpt4.Tests.Support;
using MiniGpt4.Weights;
using TorchSharp;
using Xunit;

namespace MiniGpt4.Tests.Weights;

/// <summary>The released layouts, as the tiny oracle model stores them: torch zip .pth (flat and nested) and an HF folder.</summary>
public class RealFixtureTests
{
    [SkippableFact]
    public void Eva_vit_pth_is_a_flat_state_dict_with_metadata_skipped()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/eva_vit_g.pth"));
        Assert.Equal(30, s.Keys.Count); // reference.json load_check.eva_vit_tensors_loaded
        Assert.DoesNotContain("_metadata", s.Keys);
        Assert.True(s.TryGetInfo("pos_embed", out var pos));
        Assert.Equal(new long[] { 1, 257, 32 }, pos.Shape);
        Assert.Equal(torch.ScalarType.Float32, pos.DType);
        Assert.True(s.TryGetInfo("patch_embed.proj.weight", out var conv));
        Assert.Equal(new long[] { 32, 3, 14, 14 }, conv.Shape);
        Assert.True(s.TryGetInfo("blocks.1.mlp.fc1.weight", out var fc1));
        Assert.Equal(new long[] { 139, 32 }, fc1.Shape);
    }

    [SkippableFact]
    public void Blip2_pth_is_nested_under_model_with_int64_position_ids()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/blip2_pretrained_flant5xxl.pth"));
        // load_check: 90 tensors loaded + t5_proj.{weight,bias} ignored.
        Assert.Equal(92, s.Keys.Count);
        Assert.Contains("t5_proj.weight", s.Keys);
        Assert.True(s.TryGetInfo("query_tokens", out var q));
        Assert.Equal(new long[] { 1, 32, 48 }, q.Shape);
        Assert.True(s.TryGetInfo("Qformer.bert.embeddings.position_ids", out var pid));
        Assert.Equal(torch.ScalarType.Int64, pid.DType);
        Assert.Equal(new long[] { 1, 512 }, pid.Shape);
        using var ids = s.Load("Qformer.bert.embeddings.position_ids");
        using var expected = torch.arange(512, dtype: torch.ScalarType.Int64).unsqueeze(0);
        TensorAssert.Equal(expected, ids);
    }

    [SkippableFact]
    public void Stage2_checkpoints_hold_only_llama_proj()
    {
        using var v = WeightFiles.Open(Fixtures.Require("oracle/tiny/pretrained_minigpt4.pth"));
        Assert.Equal(new[] { "llama_proj.weight", "llama_proj.bias" }, v.Keys);
        Assert.True(v.TryGetInfo("llama_proj.weight", out var w));
        Assert.Equal(new long[] { 64, 48 }, w.Shape);
        using var l2 = WeightFiles.Open(Fixtures.Require("oracle/tiny/pretrained_minigpt4_llama2.pth"));
        Assert.True(l2.TryGetInfo("llama_proj.weight", out var w2));
        Assert.Equal(new long[] { 64, 128 }, w2.Shape);
    }

    [SkippableFact]
    public void Minigptv2_checkpoint_skips_non_tensor_entries()
    {
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/minigptv2/minigptv2_checkpoint.pth"));
        Assert.NotEmpty(s.Keys);
        Assert.Contains(s.Keys, k => k.Contains("lora_A", StringComparison.Ordinal));
        Assert.Contains("llama_proj.weight", s.Keys);
    }

    [SkippableTheory]
    [InlineData("oracle/tiny/eva_vit_g.pth")]
    [InlineData("oracle/tiny/blip2_pretrained_flant5xxl.pth")]
    [InlineData("oracle/tiny/pretrained_minigpt4.pth")]
    [InlineData("oracle/tiny/minigptv2/minigptv2_checkpoint.pth")]
    [InlineData("oracle/tiny/llama/pytorch_model.bin")]
    public void Torch_tensors_equal_the_raw_zip_records_read_by_System_IO_Compression(string relative)
    {
        // An independent reader: ZipArchive inflates/copies each storage record; every tensor of
        // these files owns its whole storage (offset 0), so its bytes must equal the record's.
        var path = Fixtures.Require(relative);
        using var s = WeightFiles.Open(path);
        using var zip = ZipFile.OpenRead(path);
        var records = zip.Entries.Where(e => e.FullName.Contains("/data/", StringComparison.Ordinal)).ToList();
        var raw = records.Select(e => { using var st = e.Open(); var ms = new MemoryStream(); st.CopyTo(ms); return ms.ToArray(); }).ToList();
        foreach (var key in s.Keys)
        {
            using var viaMap = s.Load(key);
            var bytes = viaMap.bytes.ToArray();
            Assert.Contains(raw, r => r.AsSpan().SequenceEqual(bytes));
            using var viaRead = torch.empty(viaMap.shape, viaMap.dtype);
            s.ReadInto(key, viaRead);
            TensorAssert.Equal(viaMap, viaRead, key);
        }
    }

    [SkippableFact]
    public void Llama_bin_and_safetensors_hold_bit_identical_tensors()
    {
        using var bin = WeightFiles.Open(Fixtures.Require("oracle/tiny/llama/pytorch_model.bin"));
        using var st = WeightFiles.Open(Fixtures.Require("oracle/tiny/llama/model.safetensors"));
        using var folder = WeightFiles.Open(Fixtures.Require("oracle/tiny/llama"));
        Assert.Equal(23, bin.Keys.Count); // load_check.llama_tensors_loaded
        Assert.Equal(bin.Keys.OrderBy(k => k, StringComparer.Ordinal), st.Keys.OrderBy(k => k, StringComparer.Ordinal));
        Assert.Equal(st.Keys, folder.Keys); // the folder prefers model.safetensors
        foreach (var key in bin.Keys)
        {
            using var a = bin.Load(key);
            using var b = st.Load(key);
            TensorAssert.Equal(a, b, key);
        }
    }

    [SkippableFact]
    public void Stored_floats_are_fp16_exact_as_the_oracle_says()
    {
        // oracle README: every weight is rounded to an fp16-exact value; an fp16 round trip must not change it.
        using var s = WeightFiles.Open(Fixtures.Require("oracle/tiny/eva_vit_g.pth"));
        foreach (var key in s.Keys)
        {
            using var t = s.Load(key);
            using var h = s.Load(key, torch.ScalarType.Float16);
            using var back = h.to(torch.ScalarType.Float32);
            TensorAssert.Equal(t, back, key);
        }
    }
}
