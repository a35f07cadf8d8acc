using System.Runtime.InteropServices;

namespace Celer.Models.Backend;

/// <summary>
/// A backend that samples on the device, so that only token ids and the requested logprobs cross to the host
/// instead of every row of logits. The engine turns each row's sampling state into a <see cref="DeviceSamplingRow"/>
/// and a list of <see cref="LogitEdit"/>s (its logits processors, in order) and keeps the random generators itself:
/// a random row brings the uniform its sequence's generator drew, so seeded sampling does not depend on the batch.
/// </summary>
public interface IDeviceSampler
{
    /// <summary>Sets aside the device memory sampling needs for up to <paramref name="maxRows"/> rows, before the KV cache takes the rest.</summary>
    void ReserveSampling(int maxRows, int vocabSize);

    /// <summary>
    /// Enqueues the sampling of one token from each of the first <c>rows.Length</c> rows of the fp32 logits buffer
    /// (left as it is) and the copy of the ids to the host, and returns without waiting: <see cref="ReadSampled"/>
    /// waits for them. Row r's edits are <c>edits[EditsStart .. EditsStart + EditsCount]</c>, its allowed ids (sorted)
    /// <c>allowedTokenIds[AllowedStart .. AllowedStart + AllowedCount]</c>, its grammar's bitmask (structured outputs)
    /// the <c>TokenBitmask</c>-th block of ⌈vocab / 32⌉ words of <paramref name="tokenBitmasks"/>: the logits of the
    /// tokens whose bit is 0 become −inf in the logits buffer itself, so <see cref="Logprobs"/> sees them masked, as in
    /// vLLM. The ids stay on the device too, where the next step's <see cref="ForwardBatch.PendingTokens"/> read them.
    /// </summary>
    void LaunchSample(Tensor logits, ReadOnlySpan<DeviceSamplingRow> rows, ReadOnlySpan<LogitEdit> edits, ReadOnlySpan<int> allowedTokenIds, ReadOnlySpan<uint> tokenBitmasks);

    /// <summary>Waits for the ids of the last <see cref="LaunchSample"/> (row i's into <c>tokens[i]</c>).</summary>
    void ReadSampled(Span<int> tokens);

    /// <summary>
    /// Raw logprobs (log-softmax of the untouched logits) of rows <paramref name="rowIndices"/>: the chosen token's
    /// logprob and rank, and the <paramref name="numTop"/> most likely tokens of each row, row-major
    /// [rowIndices.Length, numTop], most likely first, lower id first on ties.
    /// </summary>
    void Logprobs(
        Tensor logits, ReadOnlySpan<int> rowIndices, ReadOnlySpan<int> chosenTokens, int numTop,
        Span<float> chosenLogprobs, Span<int> chosenRanks, Span<int> topTokenIds, Span<float> topLogprobs);
}

/// <summary>How to sample one row (layout shared with <c>SampleRow</c> in sampling.cu).</summary>
[StructLayout(LayoutKind.Sequential)]
public struct DeviceSamplingRow
{
    /// <summary>0: greedy.</summary>
    public float Temperature;

    /// <summary>1: off.</summary>
    public float TopP;

    /// <summary>0: off.</summary>
    public float MinP;

    /// <summary>0: off.</summary>
    public int TopK;

    /// <summary>The sequence generator's draw in [0, 1) (random rows).</summary>
    public double Uniform;

    public int EditsStart;
    public int EditsCount;
    public int AllowedStart;

    /// <summary>0: every token is allowed.</summary>
    public int AllowedCount;

    /// <summary>The token to return when every logit is masked.</summary>
    public int Fallback;

    /// <summary>0: no grammar; k: the row's allowed tokens are the k-th bitmask (1-based) of the launch.</summary>
    public int TokenBitmask;
}

/// <summary>What a logits processor does to one token's logit.</summary>
public enum LogitEditOp
{
    /// <summary>−inf.</summary>
    Mask = 0,

    /// <summary>+= value.</summary>
    Add = 1,

    /// <summary>−= value.</summary>
    Subtract = 2,

    /// <summary>Repetition penalty: x &gt; 0 ? x / value : x · value.</summary>
    Repetition = 3,
}

/// <summary>One edit of one token's logit (layout shared with <c>LogitEdit</c> in sampling.cu).</summary>
[StructLayout(LayoutKind.Sequential)]
public readonly record struct LogitEdit(int TokenId, LogitEditOp Op, float Value);
