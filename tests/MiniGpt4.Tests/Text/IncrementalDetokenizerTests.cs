using System.Text;
using MiniGpt4.Tests.Support;
using MiniGpt4.Text;
using Xunit;
using static MiniGpt4.Tests.Text.TokenizerFixtures;

namespace MiniGpt4.Tests.Text;

/// <summary>
/// Streaming decode: after every appended id the text emitted so far must be a prefix of the final
/// decode (nothing emitted is ever revised), and the concatenation with <c>Flush</c> must equal
/// <see cref="LlamaTextTokenizer.Decode"/> (an independent batch implementation) for every prefix.
/// </summary>
public sealed class IncrementalDetokenizerTests
{
    private static void AssertStreamsLikeDecode(LlamaTextTokenizer tok, IReadOnlyList<int> ids, bool skip, string where)
    {
        // Every split point: stream ids[..k], flush, compare with Decode(ids[..k]); and the running output
        // before the flush must be a prefix of the full decode.
        string full = tok.Decode(ids, skip);
        for (int k = 0; k <= ids.Count; k++)
        {
            var detok = tok.CreateDetokenizer(skip);
            var sb = new StringBuilder();
            for (int i = 0; i < k; i++)
            {
                sb.Append(detok.Append(ids[i]));
                Assert.True(full.StartsWith(sb.ToString(), StringComparison.Ordinal),
                    $"{where} (skip={skip}): after {i + 1} ids emitted {Esc(sb.ToString())}, not a prefix of {Esc(full)}");
            }
            sb.Append(detok.Flush());
            string expected = tok.Decode(ids.Take(k), skip);
            Assert.True(expected == sb.ToString(), $"{where} (skip={skip}) prefix {k}: streamed {Esc(sb.ToString())} decode {Esc(expected)}");
        }
    }

    private static string Esc(string s) => System.Text.Json.JsonSerializer.Serialize(s);

    [SkippableFact]
    public void Streams_every_real_tokenizer_case_at_every_split()
    {
        var tok = Load(LlamaModel);
        foreach (var c in Fixtures.Json(LlamaCases)["cases"]!.AsArray())
        {
            var ids = Oracle.Ints(c!["ids_with_bos"]);
            AssertStreamsLikeDecode(tok, ids.Append(tok.EosId).ToArray(), skip: true, c["text"]!.ToJsonString());
            AssertStreamsLikeDecode(tok, ids.Append(tok.EosId).ToArray(), skip: false, c["text"]!.ToJsonString());
        }
    }

    [SkippableFact]
    public void Streams_every_tiny_oracle_generation_and_segment_at_every_split()
    {
        var tok = Load(TinyModel);
        foreach (var (where, ids, text, _) in TinyGenerations())
        {
            AssertStreamsLikeDecode(tok, ids, skip: true, where);
            AssertStreamsLikeDecode(tok, ids, skip: false, where);
            var detok = tok.CreateDetokenizer();
            Assert.Equal(text, string.Concat(ids.Select(detok.Append)) + detok.Flush());
        }
        foreach (var (where, _, _, ids, _) in TinySegments())
        {
            AssertStreamsLikeDecode(tok, ids, skip: true, where);
            AssertStreamsLikeDecode(tok, ids, skip: false, where);
        }
    }

    [SkippableFact]
    public void Streams_the_stories260K_story()
    {
        var tok = Load(StoriesModel);
        var c = Fixtures.Json(StoriesReference)["cases"]![0]!;
        var ids = Oracle.Ints(c["prompt_ids"]).Concat(Oracle.Ints(c["generated_ids"])).ToArray();
        var detok = tok.CreateDetokenizer();
        Assert.Equal(c["generated_text"]!.GetValue<string>(), string.Concat(ids.Select(detok.Append)) + detok.Flush());
    }

    [SkippableFact]
    public void Streams_invalid_and_interrupted_byte_runs()
    {
        var tok = Load(LlamaModel);
        int B(int b) => tok.PieceToId($"<0x{b:X2}>");
        int a = tok.PieceToId("a"), hello = tok.PieceToId("▁Hello"), space = tok.PieceToId("▁");
        var sequences = new[]
        {
            new[] { B(0xE2), B(0x98), a },
            new[] { B(0xE2), B(0x98), B(0x95), B(0xE2) },
            new[] { B(0xF0), B(0x9F), B(0x98), B(0x80), B(0xF0), B(0x9F), B(0x98) },
            new[] { B(0xF0), B(0xF0), B(0x9F), B(0x98), B(0x80), hello },
            new[] { B(0xC0), B(0xAF), B(0xED), B(0xA0), B(0x80), B(0xF4), B(0x90), B(0x80), B(0x80) },
            new[] { B(0xE2), tok.EosId, B(0x98), B(0x95), tok.BosId, space, hello },
            new[] { tok.BosId, space, B(0x80), hello, tok.UnkId, B(0xFF), B(0x41) },
            new[] { B(0xC3), B(0xA9), B(0xC3), hello, B(0xA9) },
        };
        foreach (var ids in sequences)
        {
            AssertStreamsLikeDecode(tok, ids, skip: true, Esc(string.Join(",", ids)));
            AssertStreamsLikeDecode(tok, ids, skip: false, Esc(string.Join(",", ids)));
        }
        Assert.Equal("\uFFFD\uFFFDa", tok.Decode(sequences[0]));
    }

    [SkippableFact]
    public void Streams_random_id_sequences_heavy_in_bytes_and_special_tokens()
    {
        var tok = Load(TinyModel);
        var rng = new Random(1234);
        for (int n = 0; n < 300; n++)
        {
            var ids = new int[rng.Next(0, 14)];
            for (int i = 0; i < ids.Length; i++)
            {
                int r = rng.Next(10);
                ids[i] = r < 5 ? 3 + rng.Next(256)            // byte pieces, mostly invalid runs
                    : r < 7 ? rng.Next(3)                      // <unk>, <s>, </s>
                    : rng.Next(tok.VocabSize);
            }
            AssertStreamsLikeDecode(tok, ids, skip: true, "random " + n);
            AssertStreamsLikeDecode(tok, ids, skip: false, "random " + n);
        }
    }

    [SkippableFact]
    public void Emits_complete_characters_as_soon_as_they_are_decided()
    {
        var tok = Load(LlamaModel);
        int B(int b) => tok.PieceToId($"<0x{b:X2}>");
        var detok = tok.CreateDetokenizer();
        Assert.Equal("", detok.Append(tok.BosId));
        Assert.Equal("Hello", detok.Append(tok.PieceToId("▁Hello")));
        Assert.Equal(" world", detok.Append(tok.PieceToId("▁world")));
        Assert.Equal("", detok.Append(B(0xF0)));
        Assert.Equal("", detok.Append(B(0x9F)));
        Assert.Equal("", detok.Append(B(0x98)));
        Assert.Equal("😀", detok.Append(B(0x80)));
        Assert.Equal("", detok.Append(B(0xE2)));
        Assert.Equal("\uFFFDA", detok.Append(B(0x41))); // known invalid at once
        Assert.Equal("", detok.Append(tok.EosId));
        Assert.Equal("", detok.Flush());
        Assert.Throws<InvalidOperationException>(() => detok.Append(5));
        Assert.Throws<ArgumentOutOfRangeException>(() => tok.CreateDetokenizer().Append(tok.VocabSize));
    }
}
