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

    /// <summary>
    /// Rows whose token is not known on the host yet (async scheduling: the previous step sampled it and is still
    /// running), as pairs (row, r): row's token id is the one the device sampler drew for its row r in its last
    /// launch (<see cref="IDeviceSampler.LaunchSample"/>); <see cref="TokenIds"/> holds a placeholder there. Only a
    /// backend that samples on its device takes them.
    /// </summary>
    public int[] PendingTokens { get; init; } = [];

    /// <summary>
    /// Token type (segment) id of each row for an encoder with token type embeddings (BERT's 0 for the first text of a
    /// pair, 1 for the second); null: all 0.
    /// </summary>
    public int[]? TokenTypeIds { get; init; }

    /// <summary>
    /// Rows whose input embedding is not their token's (a vision-language model's image features): pairs (first row,
    /// count) whose rows are taken from the same rows of <see cref="ExternalEmbeddings"/>.
    /// </summary>
    public int[] ExternalEmbeddingRows { get; init; } = [];

    /// <summary>
    /// Each row's RoPE positions per axis for a model whose rotation has several (<see cref="RopeSpec.Sections"/>):
    /// row r's axis a at [r · axes + a]. Qwen2-VL's M-RoPE gives an image's placeholders their (time, row, column) and the
    /// text around them one position on all three, which fall behind the row's place in the sequence
    /// (<see cref="Positions"/>, which still decides the cache slot and the causal mask). Null: every axis is the row's
    /// position.
    /// </summary>
    public int[]? RopePositions { get; init; }

    /// <summary>The embeddings of <see cref="ExternalEmbeddingRows"/>: row r for batch row r, in the model's hidden size and activation dtype.</summary>
    public Tensor? ExternalEmbeddings { get; init; }

    public int NumTokens => TokenIds.Length;

    /// <summary>
    /// A batch of sequences whose KV blocks are numbered consecutively (sequence s owns blocks 1 + s·maxBlocks …,
    /// block 0 is the null block): each feeds Query new tokens after Context cached ones. For the attention
    /// operator's benchmark and tests; token ids are 0 and no logits are wanted.
    /// </summary>
    public static ForwardBatch ForSequences((int Context, int Query)[] sequences, int maxBlocks, int blockSize)
    {
        var positions = new List<int>();
        var slots = new List<int>();
        var queryStart = new List<int> { 0 };
        var blockTables = new int[sequences.Length * maxBlocks];
        for (int s = 0; s < sequences.Length; s++)
        {
            for (int j = 0; j < maxBlocks; j++)
            {
                blockTables[s * maxBlocks + j] = 1 + s * maxBlocks + j;
            }

            for (int p = sequences[s].Context; p < sequences[s].Context + sequences[s].Query; p++)
            {
                positions.Add(p);
                slots.Add(blockTables[s * maxBlocks + p / blockSize] * blockSize + p % blockSize);
            }

            queryStart.Add(positions.Count);
        }

        return new ForwardBatch
        {
            TokenIds = new int[positions.Count],
            Positions = [.. positions],
            SlotMapping = [.. slots],
            QueryStartLoc = [.. queryStart],
            SeqLens = sequences.Select(s => s.Context + s.Query).ToArray(),
            BlockTables = blockTables,
            MaxBlocksPerSeq = maxBlocks,
            LogitsRows = [],
        };
    }

    /// <summary>One sequence's prompt of <paramref name="rows"/> tokens that writes no KV and attends to the null block.</summary>
    public static ForwardBatch PaddingPrefill(int rows) => new()
    {
        TokenIds = new int[rows],
        Positions = Enumerable.Range(0, rows).ToArray(),
        SlotMapping = Enumerable.Repeat(-1, rows).ToArray(),
        QueryStartLoc = [0, rows],
        SeqLens = [rows],
        BlockTables = new int[rows],   // every position's block is the null block, whatever the block size
        MaxBlocksPerSeq = rows,
        LogitsRows = [rows - 1],
    };

    /// <summary>A decode batch of rows that write no KV (slot −1) and attend to the null block: for warm-up and recording.</summary>
    public static ForwardBatch Padding(int rows) => new()
    {
        TokenIds = new int[rows],
        Positions = new int[rows],
        SlotMapping = Enumerable.Repeat(-1, rows).ToArray(),
        QueryStartLoc = Enumerable.Range(0, rows + 1).ToArray(),
        SeqLens = Enumerable.Repeat(1, rows).ToArray(),
        BlockTables = new int[rows],
        MaxBlocksPerSeq = 1,
        LogitsRows = Enumerable.Range(0, rows).ToArray(),
    };

    public int NumSequences => QueryStartLoc.Length - 1;
}
