namespace Celer.Models.Backend;

/// <summary>
/// One step's flat batch, vLLM's attention metadata made explicit: every scheduled token of every sequence in
/// one row, prefill chunks and decodes mixed. Built on the host by the model runner and handed to the backend
/// once per step (<see cref="IModelBackend.BeginStep"/>), which copies it to the device if it has one.
/// </summary>
public sealed record ForwardBatch
{
    /// <summary>Token id of each row.</summary>
    public required int[] TokenIds { get; init; }

    /// <summary>Absolute position of each row inside its sequence.</summary>
    public required int[] Positions { get; init; }

    /// <summary>KV slot of each row: block id × block size + offset in the block.</summary>
    public required int[] SlotMapping { get; init; }

    /// <summary>Rows of sequence s are QueryStartLoc[s] .. QueryStartLoc[s+1]-1 (length = sequences + 1).</summary>
    public required int[] QueryStartLoc { get; init; }

    /// <summary>Tokens of sequence s in the cache once this step's tokens are written (context + new).</summary>
    public required int[] SeqLens { get; init; }

    /// <summary>Block table of each sequence, row-major with <see cref="MaxBlocksPerSeq"/> columns.</summary>
    public required int[] BlockTables { get; init; }

    public required int MaxBlocksPerSeq { get; init; }

    /// <summary>Rows whose logits are wanted (the last row of a sequence that samples, prompt rows for prompt logprobs).</summary>
    public required int[] LogitsRows { get; init; }

    public int NumTokens => TokenIds.Length;

    public int NumSequences => QueryStartLoc.Length - 1;
}
