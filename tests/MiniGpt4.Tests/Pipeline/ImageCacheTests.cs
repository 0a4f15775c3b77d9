using MiniGpt4.Abstractions;
using MiniGpt4.Tests.Support;
using Xunit;

namespace MiniGpt4.Tests.Pipeline;

/// <summary>The pipeline's image-embedding cache: an image seen again (any session, any request) is not encoded again, and the answer is unchanged.</summary>
public sealed class ImageCacheTests(TinyPipelines tiny) : IClassFixture<TinyPipelines>
{
    private sealed class CountingEncoder(IVisionEncoder inner) : IVisionEncoder
    {
        public int Calls;
        public int ImageSize => inner.ImageSize;

        public VisionFeatures Encode(ImageInput image, CancellationToken cancellationToken = default)
        {
            Interlocked.Increment(ref Calls);
            return inner.Encode(image, cancellationToken);
        }

        public void Dispose() { }
    }

    [SkippableTheory]
    [InlineData(64L << 20, 1)]
    [InlineData(0L, 3)]
    public async Task An_image_seen_again_is_not_encoded_again_and_answers_the_same(long capacity, int expectedEncodes)
    {
        var loaded = tiny.Get("vicuna0");
        var encoder = new CountingEncoder(loaded.VisionEncoder!);
        using var p = new MiniGptPipeline(ModelVariant.MiniGpt4Vicuna0, encoder, loaded.Projector, loaded.LanguageModel, ownsComponents: false,
            new MiniGptLoadOptions { ImageCacheBytes = capacity });
        var first = await p.AskAsync(OracleChat.ImageA, OracleChat.Question, OracleChat.Greedy20);
        var again = await p.AskAsync(OracleChat.ImageA, OracleChat.Question, OracleChat.Greedy20);   // a new session, same file
        var bytes = await File.ReadAllBytesAsync(Oracle.Image("a_gradient_shapes_640x480.png"));
        var fromBytes = await p.AskAsync(ImageInput.FromBytes(bytes), OracleChat.Question, OracleChat.Greedy20);
        Assert.Equal(OracleChat.ReferenceIds(), first.TokenIds);
        Assert.Equal(first.TokenIds, again.TokenIds);
        Assert.Equal(first.TokenIds, fromBytes.TokenIds);
        Assert.Equal(expectedEncodes, encoder.Calls);
    }

    [SkippableFact]
    public async Task The_cache_keeps_to_its_capacity_dropping_the_least_recently_used()
    {
        var loaded = tiny.Get("vicuna0");
        var encoder = new CountingEncoder(loaded.VisionEncoder!);
        // The tiny model's embeddings are 32 × 64 float32 values (8 KiB): room for two.
        using var p = new MiniGptPipeline(ModelVariant.MiniGpt4Vicuna0, encoder, loaded.Projector, loaded.LanguageModel, ownsComponents: false,
            new MiniGptLoadOptions { ImageCacheBytes = 2 * 32 * 64 * 4 });
        var images = new[] { "a_gradient_shapes_640x480.png", "b_tall_100x300.jpg", "c_square_224x224.png" }
            .Select(f => ImageInput.FromFile(Oracle.Image(f))).ToArray();
        var options = OracleChat.Greedy20 with { MaxNewTokens = 1 };
        foreach (var image in images) await p.AskAsync(image, "?", options);     // a, b, c: a is dropped
        Assert.Equal(3, encoder.Calls);
        await p.AskAsync(images[2], "?", options);                                // c: cached
        await p.AskAsync(images[1], "?", options);                                // b: cached
        Assert.Equal(3, encoder.Calls);
        await p.AskAsync(images[0], "?", options);                                // a: encoded again
        Assert.Equal(4, encoder.Calls);
        Assert.Equal(2, p.ImageCache.Count);
        Assert.True(p.ImageCache.Bytes <= 2 * 32 * 64 * 4);
    }
}
