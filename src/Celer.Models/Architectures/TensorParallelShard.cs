using System.Runtime.InteropServices;
using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// What one rank of a tensor-parallel group holds of a decoder (Megatron-LM's split, as vLLM's ColumnParallelLinear and
/// RowParallelLinear): the query heads and the MLP's intermediate columns in equal contiguous parts, the key/value heads
/// the same way (or, with fewer KV heads than ranks, the one KV head its query heads read, replicated), and a part of
/// the vocabulary for the LM head. q/k/v and gate/up are cut by output rows (column-parallel: no communication); o_proj
/// and down_proj by input columns (row-parallel: each rank's partial sums are all-reduced, the bias added by rank 0
/// alone); the logits' vocabulary parts are gathered into whole rows. Embeddings and norms are replicated.
/// With a group of one, nothing is cut and every weight loads as it is stored.
/// </summary>
internal sealed class TensorParallelShard
{
    private readonly ModelConfig _full;

    public TensorParallelShard(ModelConfig full, ICollectives? group)
    {
        _full = full;
        Group = group is { Size: > 1 } ? group : null;
        Size = Group?.Size ?? 1;
        Rank = Group?.Rank ?? 0;
        Check(full, Size);
    }

    /// <summary>Refuses, naming the field, a model whose heads or sizes do not divide into <paramref name="size"/> ranks.</summary>
    public static void Check(ModelConfig full, int size)
    {
        if (size == 1)
        {
            return;
        }

        void Require(bool divides, string what)
        {
            if (!divides)
            {
                throw new ModelLoadException($"{full.Architecture}: {what} does not divide into a tensor-parallel group of {size}");
            }
        }

        Require(full.NumAttentionHeads % size == 0, $"num_attention_heads {full.NumAttentionHeads}");
        Require(full.NumKeyValueHeads % size == 0 || size % full.NumKeyValueHeads == 0, $"num_key_value_heads {full.NumKeyValueHeads} (nor does it divide the group)");
        Require(full.IntermediateSize % size == 0, $"intermediate_size {full.IntermediateSize}");
        Require(full.VocabSize % size == 0, $"vocab_size {full.VocabSize}");
    }

    /// <summary>The group's collectives; null for a group of one.</summary>
    public ICollectives? Group { get; }

    public int Rank { get; }

    public int Size { get; }

    /// <summary>Row-parallel layers add their bias on one rank only, so the all-reduce counts it once.</summary>
    public bool AddsRowParallelBias => Rank == 0;

    public int Heads => _full.NumAttentionHeads / Size;

    public int HeadStart => Rank * Heads;

    /// <summary>KV heads of this rank: its part, or the single head its query heads read when the group outnumbers them.</summary>
    public int KvHeads => _full.NumKeyValueHeads >= Size ? _full.NumKeyValueHeads / Size : 1;

    public int KvHeadStart => _full.NumKeyValueHeads >= Size ? Rank * KvHeads : Rank * _full.NumKeyValueHeads / Size;

    public int Intermediate => _full.IntermediateSize / Size;

    public int IntermediateStart => Rank * Intermediate;

    public int Vocab => _full.VocabSize / Size;

    public int VocabStart => Rank * Vocab;

    /// <summary>The config this rank computes with: its heads and intermediate size (the head size and vocabulary are the model's).</summary>
    public ModelConfig Local => Size == 1 ? _full
        : _full with { NumAttentionHeads = Heads, NumKeyValueHeads = KvHeads, IntermediateSize = Intermediate };

    /// <summary>Rows <paramref name="start"/> .. + <paramref name="count"/> of a stored weight (a vector's elements): a view, nothing copied.</summary>
    public static WeightTensor Rows(WeightTensor weight, int start, int count)
    {
        long rowBytes = weight.ByteLength / weight.Shape[0];
        if (weight.Synthetic is { } rule)
        {
            // Dummy values made on the device: the rows' values are the same rule's, from the first row's first element on.
            long rowElements = weight.ElementCount / weight.Shape[0];
            return new WeightTensor(weight.Name, weight.DType, [count, .. weight.Shape[1..]], 0, count * rowBytes) { Synthetic = rule.From(start * rowElements) };
        }

        RequirePlain(weight);
        return new WeightTensor(weight.Name, weight.DType, [count, .. weight.Shape[1..]], weight.Data + (nint)(start * rowBytes), count * rowBytes);
    }

    /// <summary>
    /// Columns <paramref name="start"/> .. + <paramref name="count"/> of a stored matrix, loaded: the columns are gathered
    /// into a host buffer that the backend copies from as it loads (as it does for stacked weights), then freed.
    /// </summary>
    public static unsafe Tensor LoadColumns(IModelBackend backend, WeightTensor weight, int start, int count)
    {
        int rows = weight.Shape[0], element = weight.DType.ByteSize();
        if (weight.Synthetic is { } rule)
        {
            // Dummy values made on the device: a column slice is no run of the rule's elements, so it takes fresh ones, from
            // past the whole tensor's (a distinct run per slice). Random weights need only be random: vLLM's dummy loader
            // fills each rank's shard on its own too.
            long past = weight.ElementCount * (1L + (start / count));
            return backend.LoadStacked(weight.Name, new WeightTensor(weight.Name, weight.DType, [rows, count], 0, (long)rows * count * element) { Synthetic = rule.From(past) });
        }

        RequirePlain(weight);
        long rowBytes = weight.ByteLength / rows, partBytes = (long)count * element;
        byte* part = (byte*)NativeMemory.Alloc((nuint)(rows * partBytes));
        try
        {
            byte* source = (byte*)weight.Data + ((long)start * element);
            for (int r = 0; r < rows; r++)
            {
                Buffer.MemoryCopy(source + (r * rowBytes), part + (r * partBytes), partBytes, partBytes);
            }

            return backend.LoadStacked(weight.Name, new WeightTensor(weight.Name, weight.DType, [rows, count], (nint)part, rows * partBytes));
        }
        finally
        {
            NativeMemory.Free(part);
        }
    }

    private static void RequirePlain(WeightTensor weight)
    {
        if (weight.Packed is not null || weight.Scales is not null || weight.Synthetic is not null || weight.Data == 0)
        {
            throw new ModelLoadException($"'{weight.Name}': tensor parallelism shards unquantized weights held in host memory; this one is {(weight.Synthetic is not null ? "made on the device" : "quantized")}");
        }
    }

}
