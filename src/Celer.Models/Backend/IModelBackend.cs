using Celer.Models.Weights;

namespace Celer.Models.Backend;

/// <summary>
/// The small set of operators a decoder-only transformer needs. Models are written once against it; the CPU
/// and CUDA backends implement it. Activations are fp32 row-major [rows, columns]; weights keep their stored
/// dtype and are converted inside the operators. Every operator works on the first <c>rows</c> rows of its
/// buffers so that one set of activation buffers, sized for the largest step, serves every step.
/// </summary>
public interface IModelBackend : IDisposable
{
    string Name { get; }

    /// <summary>Makes a weight usable by the operators (the CPU keeps the memory-mapped bytes; a GPU copies them).</summary>
    Tensor LoadWeight(WeightTensor weight);

    /// <summary>An fp32 buffer of the given shape, owned by the backend until it is disposed.</summary>
    Tensor Allocate(string name, params int[] shape);

    /// <summary>Allocates the paged KV cache: per layer, keys and values of [numBlocks, blockSize, numKvHeads, headDim].</summary>
    void AllocateKvCache(int numLayers, int numBlocks, int blockSize, int numKvHeads, int headDim);

    /// <summary>Bytes one KV block takes across all layers (keys and values), for sizing the cache.</summary>
    long KvBlockBytes(int numLayers, int blockSize, int numKvHeads, int headDim);

    /// <summary>Takes this step's metadata; the operators below read it.</summary>
    void BeginStep(ForwardBatch batch);

    /// <summary>output[r] = table[tokenIds[r]].</summary>
    void Embedding(Tensor table, Tensor output);

    /// <summary>y = x·Wᵀ (+ bias) for the first rows of x; W is [outFeatures, inFeatures] as nn.Linear stores it.</summary>
    void Linear(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y);

    /// <summary>y = rmsnorm(x)·weight over rows of length weight's size; x is seen as [rows·(columns/size), size], so it also normalizes per head.</summary>
    void RmsNorm(Tensor x, int rows, Tensor weight, float eps, Tensor y);

    /// <summary>Fused residual: residual += x; x = rmsnorm(residual)·weight.</summary>
    void AddRmsNorm(Tensor x, Tensor residual, int rows, Tensor weight, float eps);

    /// <summary>Rotates the first rotaryDim dims of every head of q or k ([rows, heads·headDim]) by each row's position (rotate-half layout).</summary>
    void Rope(Tensor qOrK, int rows, int numHeads, int headDim, RopeSpec rope);

    /// <summary>out = silu(gate)·up, element-wise over [rows, intermediate].</summary>
    void SiluMul(Tensor gate, Tensor up, int rows, Tensor output);

    /// <summary>Writes this step's keys and values of one layer into the paged cache through the slot mapping.</summary>
    void WriteKv(int layer, Tensor k, Tensor v, int rows);

    /// <summary>Causal paged attention of this step's queries over the layer's cache (GQA; optional sliding window).</summary>
    void Attention(int layer, Tensor q, Tensor output, AttentionSpec spec);

    /// <summary>output[i] = x[batch.LogitsRows[first + i]] for i in 0..count-1.</summary>
    void GatherLogitsRows(Tensor x, int first, int count, Tensor output);

    /// <summary>Copies the first rows of an fp32 buffer to the host.</summary>
    void CopyToHost(Tensor x, int rows, Span<float> destination);
}

/// <summary>Rotary embedding of one model: inverse frequencies, the rotated width and yarn's attention scaling.</summary>
public sealed record RopeSpec(float[] InverseFrequencies, int RotaryDim, float AttentionScaling);

/// <summary>Attention shape of one model.</summary>
public sealed record AttentionSpec(int NumHeads, int NumKvHeads, int HeadDim, float Scale, int SlidingWindow);
