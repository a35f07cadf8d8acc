using Celer.Engine.Execution;
using Celer.Models.Backend;
using Celer.Models.Multimodal;

namespace Celer.Engine.Multimodal;

/// <summary>
/// Puts a step's image features where the language model reads them: the rows the step computes are copied into
/// <see cref="Buffer"/> at their batch rows. Images are encoded several per pass, and their features kept by the image's
/// hash for the <see cref="CachedImages"/> most recently used (vLLM's encoder cache): the next chunk of a prompt whose
/// image a chunk boundary split, and later prompts showing the same image, read them without encoding it again.
/// </summary>
internal sealed class ImageFeatureWriter : IDisposable
{
    private readonly IImageEncoder _encoder;
    private readonly IModelBackend _backend;
    private readonly Tensor _cache;                                  // slot s: rows [s·F, (s + 1)·F)
    private readonly Dictionary<string, int> _slots = new(StringComparer.Ordinal);
    private readonly LinkedList<string> _recent = new();             // most recently used first

    public ImageFeatureWriter(IImageEncoder encoder, IModelBackend backend, int maxNumTokens, int hiddenSize)
    {
        _encoder = encoder;
        _backend = backend;
        Buffer = backend.Allocate("image_embeddings", backend.ActivationDType, maxNumTokens, hiddenSize);
        // Enough for the images of a few steps; an image's features are 576 rows for llava-1.5 (4.5 MiB in bf16).
        CachedImages = 4 * encoder.MaxImagesPerPass;
        _cache = backend.Allocate("image_feature_cache", backend.ActivationDType, CachedImages * encoder.FeaturesPerImage, hiddenSize);
    }

    /// <summary>Row r holds batch row r's embedding when that row is an image's (<see cref="ForwardBatch.ExternalEmbeddings"/>).</summary>
    public Tensor Buffer { get; }

    /// <summary>How many images' features are kept between steps.</summary>
    public int CachedImages { get; }

    /// <summary>Images encoded so far (each pass's images counted once).</summary>
    public long EncodedImages { get; private set; }

    public void Write(IReadOnlyList<ImageSlice> slices)
    {
        int features = _encoder.FeaturesPerImage;
        // Cached images first: encoding the others may take their slots.
        foreach (ImageSlice slice in slices)
        {
            if (_slots.ContainsKey(slice.Image.Hash))
            {
                _backend.CopyRows(_cache, Touch(slice.Image.Hash) * features + slice.FirstFeature, Buffer, slice.Row, slice.Count);
            }
        }

        PromptImage[] missing = [.. slices.Select(s => s.Image).DistinctBy(i => i.Hash).Where(i => !_slots.ContainsKey(i.Hash))];
        for (int first = 0; first < missing.Length; first += _encoder.MaxImagesPerPass)
        {
            PromptImage[] pass = missing[first..Math.Min(missing.Length, first + _encoder.MaxImagesPerPass)];
            _encoder.Encode([.. pass.Select(i => i.PixelValues)]);
            EncodedImages += pass.Length;
            var index = pass.Select((image, i) => (image.Hash, i)).ToDictionary(p => p.Hash, p => p.i, StringComparer.Ordinal);
            // Straight from the pass: a step with more images than the cache holds still gets every one of them.
            foreach (ImageSlice slice in slices)
            {
                if (index.TryGetValue(slice.Image.Hash, out int i))
                {
                    _backend.CopyRows(_encoder.Features, i * features + slice.FirstFeature, Buffer, slice.Row, slice.Count);
                }
            }

            for (int i = 0; i < pass.Length; i++)
            {
                _backend.CopyRows(_encoder.Features, i * features, _cache, Keep(pass[i].Hash) * features, features);
            }
        }
    }

    public void Dispose() => _encoder.Dispose();

    /// <summary>The slot for a newly encoded image: a free one, else the least recently used one's.</summary>
    private int Keep(string hash)
    {
        int slot = _slots.Count;
        if (_slots.Count == CachedImages)
        {
            string oldest = _recent.Last!.Value;
            _recent.RemoveLast();
            slot = _slots[oldest];
            _slots.Remove(oldest);
        }

        _slots[hash] = slot;
        _recent.AddFirst(hash);
        return slot;
    }

    private int Touch(string hash)
    {
        _recent.Remove(hash);
        _recent.AddFirst(hash);
        return _slots[hash];
    }
}
