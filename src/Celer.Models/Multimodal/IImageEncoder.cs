using Celer.Models.Backend;

namespace Celer.Models.Multimodal;

/// <summary>
/// A vision-language model's image side: preprocessed pixel values in, the rows the language model reads at the image's
/// placeholder positions out (vLLM's <c>get_multimodal_embeddings</c>). Runs on a backend of its own on the language
/// model's device, so its attention has a cache of its own.
/// </summary>
public interface IImageEncoder : IDisposable
{
    /// <summary>Rows each image becomes: the placeholder token is repeated this many times in the prompt.</summary>
    int FeaturesPerImage { get; }

    /// <summary>The pixel values an image is preprocessed to: channels × height × width, channel-major.</summary>
    int PixelValueCount { get; }

    /// <summary>The most images one <see cref="Encode"/> takes.</summary>
    int MaxImagesPerPass { get; }

    /// <summary>
    /// The features of the last <see cref="Encode"/>: image i at rows [i·<see cref="FeaturesPerImage"/>, …), in the
    /// language model's hidden size and activation dtype. Valid until the next call.
    /// </summary>
    Tensor Features { get; }

    /// <summary>Queues the encoding of up to <see cref="MaxImagesPerPass"/> images.</summary>
    void Encode(IReadOnlyList<float[]> pixelValues);
}
