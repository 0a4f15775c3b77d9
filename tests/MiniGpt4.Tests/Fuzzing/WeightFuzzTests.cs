using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using CsCheck;
using MiniGpt4.Tests.Support;
using MiniGpt4.Tests.Weights;
using MiniGpt4.Weights;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace MiniGpt4.Tests.Fuzzing;

/// <summary>
/// Seeded mutations of valid weight files: safetensors (bytes, and the header's JSON), torch zip
/// checkpoints (bytes, and the pickle inside re-zipped), and bare pickles. Every file that opens is
/// also read tensor by tensor (as stored and converted to float64). Allowed outcome: success or
/// <see cref="MiniGptWeightsException"/>, the only exception the weights layer documents for bad files.
/// </summary>
public sealed class WeightFuzzTests(ITestOutputHelper output) : IDisposable
{
    private static readonly Type[] Allowed = [typeof(MiniGptWeightsException)];
    private readonly TempDir _dir = new();
    private long _files;

    public void Dispose() => _dir.Dispose();

    private static readonly Lazy<(string Name, byte[] Bytes)[]> SafetensorsSeeds = new(() =>
    {
        using var dir = new TempDir();
        var path = dir.File("seed.safetensors");
        using var a = torch.arange(6, dtype: torch.ScalarType.Float32).reshape(2, 3);
        using var b = torch.ones(4, dtype: torch.ScalarType.Float16);
        using var c = torch.full([2, 2], 1.5, dtype: torch.ScalarType.BFloat16);
        using var d = torch.arange(3, dtype: torch.ScalarType.Int64);
        using var e = torch.tensor(3.25f);
        using var z = torch.zeros(0, 5);
        using var f = torch.ones(3, dtype: torch.ScalarType.Bool);
        SafetensorsWriter.Write(path, new Dictionary<string, torch.Tensor> { ["a"] = a, ["b"] = b, ["c.weight"] = c, ["d"] = d, ["e"] = e, ["z"] = z, ["f"] = f });
        var list = new List<(string, byte[])> { ("synthetic", File.ReadAllBytes(path)) };
        return list.ToArray();
    });

    private static readonly Lazy<(string Name, byte[] Bytes)[]> ZipSeeds = new(() =>
    {
        using var dir = new TempDir();
        var list = new List<(string, byte[])>();
        var w = torch.arange(12, dtype: torch.ScalarType.Float32);
        var h = torch.ones(6, dtype: torch.ScalarType.Float16);
        var storages = new Dictionary<string, torch.Tensor> { ["0"] = w, ["1"] = h };
        var state = new SortedList<string, object?>
        {
            ["w"] = new PickledTensor("0", 0, [3, 4], [4, 1]),
            ["w_t"] = new PickledTensor("0", 0, [4, 3], [1, 4]),       // a transposed view of the same storage
            ["w_off"] = new PickledTensor("0", 2, [5], [2]),            // offset and stride
            ["h"] = new PickledTensor("1", 0, [2, 3], [3, 1]),
            ["scalar"] = new PickledTensor("1", 5, [], []),
        };
        var root = new Dictionary<string, object?>
        {
            ["model"] = state,
            ["optimizer"] = new Dictionary<string, object?> { ["lr"] = 1e-4, ["betas"] = new object?[] { 0.9, 0.999 }, ["state"] = new List<object?> { 1L, "x", null, true } },
            ["epoch"] = 3L,
        };
        var path = dir.File("seed.pth");
        TorchZipWriter.Write(path, root, storages, stem: "seed");
        list.Add(("synthetic", File.ReadAllBytes(path)));
        var real = Fixtures.Shared is null ? null : Path.Combine(Fixtures.Shared, "oracle/tiny/pretrained_minigpt4.pth");
        if (real is not null && File.Exists(real)) list.Add(("oracle-stage2", File.ReadAllBytes(real)));
        return list.ToArray();
    });

    /// <summary>The pickle and the storages of each zip seed, for pickle-level mutations re-zipped around them.</summary>
    private static readonly Lazy<(string Name, string Stem, byte[] Pickle, Dictionary<string, torch.Tensor> Storages)[]> PickleSeeds = new(() =>
        ZipSeeds.Value.Select(s =>
        {
            using var zip = new ZipArchive(new MemoryStream(s.Bytes), ZipArchiveMode.Read);
            var pkl = zip.Entries.First(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal));
            var stem = pkl.FullName[..^"/data.pkl".Length];
            byte[] Read(ZipArchiveEntry e) { using var m = new MemoryStream(); using (var st = e.Open()) st.CopyTo(m); return m.ToArray(); }
            var storages = zip.Entries.Where(e => e.FullName.StartsWith(stem + "/data/", StringComparison.Ordinal))
                .ToDictionary(e => e.FullName[(stem.Length + 6)..], e => torch.tensor(Read(e), dtype: torch.ScalarType.Byte));
            return (s.Name, stem, Read(pkl), storages);
        }).ToArray());

    private string WriteCase(byte[] bytes, string extension)
    {
        var path = _dir.File($"case{_files++}{extension}");
        File.WriteAllBytes(path, bytes);
        return path;
    }

    /// <summary>Opens <paramref name="path"/> and reads up to 16 tensors as stored and as float64.</summary>
    private static void OpenAndRead(string path)
    {
        try
        {
            using var source = WeightFiles.Open(path);
            foreach (var key in source.Keys.Take(16))
            {
                Assert.True(source.TryGetInfo(key, out var info));
                using var t = source.Load(key);
                Assert.Equal(info.Shape, t.shape);
                if (DTypes.IsFloating(info.DType))
                {
                    using var f = source.Load(key, torch.ScalarType.Float64);
                    using var dst = torch.empty(info.Shape, torch.ScalarType.Float32);
                    source.ReadInto(key, dst);
                }
            }
        }
        finally
        {
            File.Delete(path);
        }
    }

    private static Gen<(int Seed, ByteMutation[] Ops)> ByteCases(int seeds) => Gen.Select(Gen.Int[0, seeds - 1], Mutations.Some());

    [Fact]
    public void Safetensors_byte_mutations_are_refused_only_with_MiniGptWeightsException()
    {
        var seeds = SafetensorsSeeds.Value;
        byte[] Input((int Seed, ByteMutation[] Ops) c) => Mutations.Apply(seeds[c.Seed].Bytes, c.Ops);
        FuzzRunner.Run("safetensors-bytes", ByteCases(seeds.Length), c => OpenAndRead(WriteCase(Input(c), ".safetensors")),
            c => $"{seeds[c.Seed].Name} [{string.Join(", ", c.Ops)}]", ciIterations: 3000, Allowed, output, Input);
    }

    [Fact]
    public void Safetensors_header_json_mutations_are_refused_only_with_MiniGptWeightsException()
    {
        var seed = SafetensorsSeeds.Value[0].Bytes;
        var headerLength = (int)BinaryPrimitives.ReadUInt64LittleEndian(seed);
        var header = Encoding.UTF8.GetString(seed, 8, headerLength);
        var data = seed[(8 + headerLength)..];
        byte[] Input(((Mutations.JsonMutation[] Json, ByteMutation[] Bytes) M, int Length) c)
        {
            var json = Mutations.ApplyJson(header, c.M.Json, c.M.Bytes);
            var file = new byte[8 + json.Length + data.Length];
            // Mostly the right length; sometimes the old one or a neighbour of it.
            var declared = c.Length switch { 0 => (ulong)headerLength, 1 => (ulong)json.Length + 1, _ => (ulong)json.Length };
            BinaryPrimitives.WriteUInt64LittleEndian(file, declared);
            json.CopyTo(file, 8);
            data.CopyTo(file, 8 + json.Length);
            return file;
        }
        FuzzRunner.Run("safetensors-json", Gen.Select(Mutations.JsonCase, Gen.Int[0, 7], (m, length) => (M: m, Length: length)), c => OpenAndRead(WriteCase(Input(c), ".safetensors")),
            c => $"json [{string.Join(", ", c.M.Json)}] bytes [{string.Join(", ", c.M.Bytes)}] length#{c.Length}", ciIterations: 3000, Allowed, output, Input);
    }

    [Fact]
    public void Torch_zip_byte_mutations_are_refused_only_with_MiniGptWeightsException()
    {
        var seeds = ZipSeeds.Value;
        byte[] Input((int Seed, ByteMutation[] Ops) c) => Mutations.Apply(seeds[c.Seed].Bytes, c.Ops);
        FuzzRunner.Run("torchzip-bytes", ByteCases(seeds.Length), c => OpenAndRead(WriteCase(Input(c), ".pth")),
            c => $"{seeds[c.Seed].Name} [{string.Join(", ", c.Ops)}]", ciIterations: 3000, Allowed, output, Input);
    }

    [Fact]
    public void Pickle_mutations_inside_a_valid_zip_are_refused_only_with_MiniGptWeightsException()
    {
        var seeds = PickleSeeds.Value;
        FuzzRunner.Run("torchzip-pickle", ByteCases(seeds.Length), c =>
            {
                var s = seeds[c.Seed];
                var path = _dir.File($"case{_files++}.pth");
                TorchZipWriter.WriteZip(path, s.Stem, Mutations.Apply(s.Pickle, c.Ops), s.Storages);
                OpenAndRead(path);
            },
            c => $"{seeds[c.Seed].Name} pickle [{string.Join(", ", c.Ops)}]", ciIterations: 2400, Allowed, output,
            c => Mutations.Apply(seeds[c.Seed].Pickle, c.Ops));
    }

    [Fact]
    public void Bare_pickle_mutations_are_refused_only_with_MiniGptWeightsException()
    {
        var seeds = PickleSeeds.Value;
        byte[] Input((int Seed, ByteMutation[] Ops) c) => Mutations.Apply(seeds[c.Seed].Pickle, c.Ops);
        FuzzRunner.Run("pickle", Gen.Select(Gen.Int[0, seeds.Length - 1], Mutations.Some(10), (seed, ops) => (Seed: seed, Ops: ops)), c => PickleReader.Load(Input(c), "fuzz.pkl"),
            c => $"{seeds[c.Seed].Name} [{string.Join(", ", c.Ops)}]", ciIterations: 16000, Allowed, output, Input);
    }
}
