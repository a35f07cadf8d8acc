using Celer.Engine.Execution;
using Celer.Models.Backend;
using Celer.Models.Multimodal;

namespace Celer.Engine.Multimodal;

/// <summary>
/// Puts a step's image features where the language model reads them: each image the step touches is encoded (several
/// per pass, an image shown twice once), and the rows the step computes are copied into <see cref="Buffer"/> at their
/// batch rows. An image whose placeholders a prompt chunk boundary splits is encoded again for the next chunk.
/// </summary>
internal sealed class ImageFeatureWriter(IImageEncoder encoder, IModelBackend backend, int maxNumTokens, int hiddenSize) : IDisposable
{
    /// <summary>Row r holds batch row r's embedding when that row is an image's (<see cref="ForwardBatch.ExternalEmbeddings"/>).</summary>
    public Tensor Buffer { get; } = backend.Allocate("image_embeddings", backend.ActivationDType, maxNumTokens, hiddenSize);

    public void Write(IReadOnlyList<ImageSlice> slices)
    {
        PromptImage[] images = [.. slices.Select(s => s.Image).DistinctBy(i => i.Hash)];
        for (int first = 0; first < images.Length; first += encoder.MaxImagesPerPass)
        {
            PromptImage[] pass = images[first..Math.Min(images.Length, first + encoder.MaxImagesPerPass)];
            encoder.Encode([.. pass.Select(i => i.PixelValues)]);
            foreach (ImageSlice slice in slices)
            {
                int index = Array.FindIndex(pass, i => i.Hash == slice.Image.Hash);
                if (index >= 0)
                {
                    backend.CopyRows(encoder.Features, index * encoder.FeaturesPerImage + slice.FirstFeature, Buffer, slice.Row, slice.Count);
                }
            }
        }
    }

    public void Dispose() => encoder.Dispose();
}
