using System.Text;
using MiniGpt4.Generation;
using MiniGpt4.Tests.Support;
using MiniGpt4.Text;
using Xunit;
using static MiniGpt4.Tests.Text.TokenizerFixtures;

namespace MiniGpt4.Tests.Generation;

/// <summary>
/// The engine streams text by decoding windows of recent ids with the model's one detokeniser: what it has
/// emitted is always a prefix of the batch decode (nothing is revised), and at the end it equals the batch decode.
/// </summary>
public sealed class StreamingTextTests
{
    private static void AssertStreamsLikeDecode(LlamaTextTokenizer tok, IReadOnlyList<int> ids, string where)
    {
        var full = tok.Decode(ids);
        var stream = new StreamingText(window => tok.Decode(window));
        var sb = new StringBuilder();
        foreach (var id in ids)
        {
            sb.Append(stream.Append(id));
            Assert.True(full.StartsWith(sb.ToString(), StringComparison.Ordinal), $"{where}: emitted {Esc(sb.ToString())}, not a prefix of {Esc(full)}");
        }
        sb.Append(stream.Flush());
        Assert.True(full == sb.ToString(), $"{where}: streamed {Esc(sb.ToString())}, decode {Esc(full)}");
    }

    private static string Esc(string s) => System.Text.Json.JsonSerializer.Serialize(s);

    [SkippableFact]
    public void Streams_every_real_tokenizer_case_like_the_batch_decode()
    {
        var tok = Load(LlamaModel);
        foreach (var c in Fixtures.Json(LlamaCases)["cases"]!.AsArray())
        {
            var ids = Oracle.Ints(c!["ids_with_bos"]);
            // Every prefix, as a generation could stop anywhere; EOS at the end is skipped.
            for (var k = 1; k <= ids.Length; k++)
                AssertStreamsLikeDecode(tok, [.. ids.Take(k), tok.EosId], c["text"]!.ToJsonString() + $" [..{k}]");
        }
    }

    [SkippableFact]
    public void Streams_every_tiny_oracle_generation_like_the_reference_text()
    {
        var tok = Load(TinyModel);
        foreach (var (where, ids, text, _) in TinyGenerations())
        {
            AssertStreamsLikeDecode(tok, ids, where);
            var stream = new StreamingText(window => tok.Decode(window));
            Assert.Equal(text, string.Concat(ids.Select(stream.Append)) + stream.Flush());
        }
    }

    [SkippableFact]
    public void Streams_random_ids_with_broken_bytes_and_added_tokens_like_the_batch_decode()
    {
        // Random draws weighted towards byte pieces (<0x..>, ids 3..258), which split UTF-8 characters and
        // form invalid sequences, plus the added pad token and the special ids.
        var tok = Load(LlamaModel);
        var rng = new Random(11);
        for (var n = 0; n < 300; n++)
        {
            var ids = Enumerable.Range(0, rng.Next(1, 24)).Select(_ => rng.Next(10) switch
            {
                < 5 => rng.Next(3, 259),
                5 => rng.Next(0, 3),
                6 => tok.VocabSize - 1,
                _ => rng.Next(259, 32000),
            }).ToArray();
            AssertStreamsLikeDecode(tok, ids, $"random #{n} [{string.Join(",", ids)}]");
        }
    }
}
