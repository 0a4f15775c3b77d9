using System.Security.Cryptography;

namespace MiniGpt4.Sessions;

/// <summary>
/// The content key of an image input (SHA-256 of its encoded bytes, or of its size and RGB bytes), so that a replayed
/// history reuses the embeddings of an image the session already encoded. A stream has none (it can be read once).
/// </summary>
internal static class ImageContentKey
{
    public static byte[]? Of(ImageInput image)
    {
        switch (image.Kind)
        {
            case ImageInput.InputKind.Encoded:
                return SHA256.HashData(image.Data.Span);
            case ImageInput.InputKind.Rgb:
            {
                using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
                hash.AppendData(BitConverter.GetBytes(image.Width));
                hash.AppendData(BitConverter.GetBytes(image.Height));
                hash.AppendData(image.Data.Span);
                return hash.GetHashAndReset();
            }
            case ImageInput.InputKind.File:
                try
                {
                    using var file = File.OpenRead(image.Path!);
                    // A file over the default size limit is refused by the decoder anyway: do not read it to hash it.
                    return file.Length > ImageDecodingOptions.DefaultMaxEncodedBytes ? null : SHA256.HashData(file);
                }
                catch (IOException) { return null; }         // the decoder reports the problem with its own message
                catch (UnauthorizedAccessException) { return null; }
            default:
                return null;
        }
    }
}
