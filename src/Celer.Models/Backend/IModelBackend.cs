using Celer.Models.Quantization;
using Celer.Models.Weights;

namespace Celer.Models.Backend;

/// <summary>
/// The small set of operators a decoder-only transformer needs. Models are written once against it; the CPU
/// and CUDA backends implement it. Activations are row-major [rows, columns] in the backend's
/// <see cref="ActivationDType"/> (fp32 on the CPU, the model dtype on a GPU, as vLLM runs a bf16 model in bf16);
/// the logits are fp32. Every operator works on the first <c>rows</c> rows of its buffers so that one set of
/// activation buffers, sized for the largest step, serves every step.
/// </summary>
public interface IModelBackend : IDisposable
{
    string Name { get; }

    /// <summary>The dtype of activations; the operators compute in fp32 and round to it.</summary>
    DType ActivationDType { get; }

    /// <summary>What the KV cache stores (<c>--kv-cache-dtype</c>, else the backend's default: fp32 on the CPU, the model dtype on a GPU).</summary>
    DType KvCacheDType { get; }

    /// <summary>The device's busy and idle time per step, where the backend measures it (CUDA); else null.</summary>
    StepTimeline? Timeline => null;

    /// <summary>
    /// Per-layer scales of an FP8 KV cache (a cached value is value / scale), from the checkpoint's k_scale/v_scale;
    /// 1.0 for every layer until set. A cache of another type ignores them.
    /// </summary>
    void SetKvCacheScales(float[] kScales, float[] vScales);

    /// <summary>What every backend checks of <see cref="SetKvCacheScales"/>' arguments: one positive finite scale per layer and kind.</summary>
    static void CheckKvCacheScales(float[] kScales, float[] vScales, int layers)
    {
        if (kScales.Length != layers || vScales.Length != layers || kScales.Concat(vScales).Any(s => !(s > 0f) || float.IsInfinity(s)))
        {
            throw new ArgumentException($"KV cache scales must be {layers} positive finite values per kind.");
        }
    }

    /// <summary>Makes a weight usable by the operators (the CPU keeps the memory-mapped bytes; a GPU copies them).</summary>
    Tensor LoadWeight(WeightTensor weight);

    /// <summary>
    /// One weight made of <paramref name="parts"/> stacked along their first dimension (q/k/v, gate/up), so a single
    /// GEMM computes all of them; the parts must share their dtype and trailing dimensions.
    /// </summary>
    Tensor LoadStacked(string name, params WeightTensor[] parts);

    /// <summary>
    /// A mixture-of-experts layer's expert projections (every expert's gate and up, or every expert's down) stacked as
    /// <see cref="LoadStacked"/> stacks them, expert 0 first, for <see cref="MoeExperts"/>. Integer weight-only experts
    /// keep their codes where the backend's MoE kernels read them (the CUDA backend's 4-bit <see cref="Int4Layout.Experts"/>,
    /// the CPU's 4- and 8-bit codes) and are dequantized at load otherwise.
    /// </summary>
    Tensor LoadExperts(string name, params WeightTensor[] parts);

    /// <summary>
    /// MXFP4 expert weights (gpt-oss's) kept as stored, for a backend whose <see cref="MoeExperts"/> decodes them itself:
    /// <paramref name="blocks"/> [rows, columns / 2] code bytes and <paramref name="scales"/> [rows, columns / 32] E8M0
    /// bytes (<see cref="Quantization.Mxfp4"/>), rows in the order <see cref="MoeExperts"/> takes. Null where the backend
    /// takes only decoded weights; the model then loads the bf16 values.
    /// </summary>
    Tensor? LoadMxfp4(string name, WeightTensor blocks, WeightTensor scales) => null;

    /// <summary>A buffer of the given dtype and shape, owned by the backend until it is disposed.</summary>
    Tensor Allocate(string name, DType dtype, params int[] shape);

    /// <summary>Allocates the paged KV cache: per layer, keys and values of [numBlocks, blockSize, numKvHeads, headDim].</summary>
    void AllocateKvCache(int numLayers, int numBlocks, int blockSize, AttentionSpec spec);

    /// <summary>Bytes one KV block takes across all layers (keys and values), for sizing the cache.</summary>
    long KvBlockBytes(int numLayers, int blockSize, int numKvHeads, int headDim);

    /// <summary>
    /// Allocates the host tier of the KV cache (<c>--kv-offload-size</c>): <paramref name="numHostBlocks"/> blocks laid out
    /// like the device cache's (pinned memory on a GPU, so copies run at the link's speed). After <see cref="AllocateKvCache"/>.
    /// </summary>
    void AllocateHostKvCache(int numHostBlocks);

    /// <summary>
    /// Queues copies of device blocks into host blocks (blocks evicted from the prefix cache, a swapped-out request). They
    /// read what every operator queued before them wrote, and every operator queued after them waits for them, since it
    /// may write the blocks they read; the calling thread is not held.
    /// </summary>
    void StoreKvBlocks(ReadOnlySpan<KvBlockCopy> copies);

    /// <summary>
    /// Queues copies of host blocks into device blocks, after the stores and operators queued before them. Nothing queued
    /// later waits for them: no operator may touch the blocks before <see cref="KvLoadsDone"/> says the returned fence has
    /// passed. Fences increase; loads finish in the order they were queued.
    /// </summary>
    long LoadKvBlocks(ReadOnlySpan<KvBlockCopy> copies);

    /// <summary>Whether every load up to <paramref name="fence"/> has finished; with <paramref name="wait"/>, returns once it has.</summary>
    bool KvLoadsDone(long fence, bool wait);

    /// <summary>Takes this step's metadata; the operators below read it.</summary>
    void BeginStep(ForwardBatch batch);

    /// <summary>output[r] = table[tokenIds[r]].</summary>
    void Embedding(Tensor table, Tensor output);

    /// <summary>
    /// An encoder's input embeddings (BERT, RoBERTa): output[r] = words[tokenIds[r]] + tokenTypes[tokenTypeIds[r]],
    /// rounded to the activation dtype, then + positions[positions[r] + <paramref name="positionOffset"/>], rounded again
    /// (transformers' BertEmbeddings adds in that order). Token types come from <see cref="ForwardBatch.TokenTypeIds"/>
    /// (all 0 when it is null); a null <paramref name="tokenTypes"/> table adds nothing. RoBERTa's offset is its
    /// padding index + 1.
    /// </summary>
    void EncoderEmbedding(Tensor words, Tensor? tokenTypes, Tensor positions, int positionOffset, Tensor output);

    /// <summary>
    /// LayerNorm over rows of weight's size: y = (x − mean) / √(var + eps) · weight + bias, statistics in fp32 (biased
    /// variance), rounded once to y's dtype, as torch's layer_norm; y may be x.
    /// </summary>
    void LayerNorm(Tensor x, int rows, Tensor weight, Tensor bias, float eps, Tensor y);

    /// <summary>
    /// A post-norm encoder's residual step (BERT's SelfOutput and Output): residual = LayerNorm(x + residual), the sum
    /// rounded to the activation dtype before it is normalized, as torch adds and then normalizes.
    /// </summary>
    void AddLayerNorm(Tensor x, Tensor residual, int rows, Tensor weight, Tensor bias, float eps);

    /// <summary>
    /// x = gelu(x) in place over the first <paramref name="rows"/> rows, in fp32 and rounded once, in the form
    /// <paramref name="form"/> names: torch's exact <c>gelu</c>, <c>gelu(approximate="tanh")</c>, or CLIP's quick_gelu.
    /// </summary>
    void Gelu(Tensor x, int rows, GeluForm form);

    /// <summary>
    /// y = x·Wᵀ (+ bias) for the first rows of x; W is [outFeatures, inFeatures] as nn.Linear stores it. With
    /// <paramref name="activations"/> (an FP8 W8A8 checkpoint's layer) x is quantized to E4M3 by that scheme first, as the
    /// checkpoint's kernels do; x itself is left as it is.
    /// </summary>
    void Linear(Tensor x, int rows, Tensor weight, Tensor? bias, Tensor y, ActivationQuantization? activations = null);

    /// <summary>y = rmsnorm(x)·weight over rows of length weight's size; x is seen as [rows·(columns/size), size], so it also normalizes per head.</summary>
    void RmsNorm(Tensor x, int rows, Tensor weight, float eps, Tensor y);

    /// <summary>
    /// Fused residual: residual += x; x = rmsnorm(residual)·weight. <paramref name="quantizeFor"/> names the input
    /// quantization of the FP8 layer whose <see cref="Linear"/> reads x next, the caller's next call: a backend may write
    /// x's codes for it in the same kernel, and that layer then skips its own pass over x (the CUDA backend; the same
    /// codes either way).
    /// </summary>
    void AddRmsNorm(Tensor x, Tensor residual, int rows, Tensor weight, float eps, ActivationQuantization? quantizeFor = null);

    /// <summary>
    /// OLMo-2's RMSNorm in place over columns [<paramref name="offset"/>, offset + weight's size) of each of the first
    /// <paramref name="rows"/> rows of <paramref name="x"/>: weight · (v · rsqrt(mean(v²) + eps)) in fp32, rounded once
    /// (Olmo2RMSNorm applies the weight before rounding, LlamaRMSNorm after).
    /// </summary>
    void RmsNormSlice(Tensor x, int rows, int offset, Tensor weight, float eps);

    /// <summary>residual += x over the first <paramref name="rows"/> rows, rounded once (a post-norm model's residual add).</summary>
    void Add(Tensor x, int rows, Tensor residual);

    /// <summary>
    /// Gemma's RMSNorm (Gemma2RMSNorm / Gemma3RMSNorm): y = x · rsqrt(mean(x²) + eps) · (1 + weight) in fp32 with the
    /// weight widened before the 1 is added, rounded once to y's dtype (LlamaRMSNorm rounds before the weight). x is
    /// seen as [rows·(columns/size), size], as in <see cref="RmsNorm"/>.
    /// </summary>
    void GemmaRmsNorm(Tensor x, int rows, Tensor weight, float eps, Tensor y);

    /// <summary>
    /// Gemma's residual step, fused: x = gemmaNorm(x)·(1 + postNorm) (the sublayer output's own norm, rounded once);
    /// residual += x (rounded once); x = gemmaNorm(residual)·(1 + nextNorm) (the next sublayer's input norm).
    /// </summary>
    void GemmaAddRmsNorm(Tensor x, Tensor residual, int rows, Tensor postNorm, Tensor nextNorm, float eps);

    /// <summary>
    /// Splits the fused projection <paramref name="qkv"/> ([rows, (heads + 2·kvHeads)·headDim], q then k then v):
    /// q and k get the optional per-head RMSNorm (Qwen3's q_norm/k_norm) and RoPE (the first rotaryDim dims of each
    /// head, rotate-half layout, by each row's position); q goes to <paramref name="q"/> ([rows, heads·headDim]),
    /// k and v into the layer's paged cache through the slot mapping (slot −1: not written).
    /// </summary>
    void PrepareAttention(int layer, Tensor qkv, int rows, AttentionSpec spec, RopeSpec rope, Tensor? qNorm, Tensor? kNorm, float eps, Tensor q);

    /// <summary>
    /// out = silu(gate)·up over the fused projection <paramref name="gateUp"/> ([rows, 2·intermediate], gate then up).
    /// <paramref name="quantizeFor"/>: the input quantization of the FP8 layer reading out next, as in <see cref="AddRmsNorm"/>.
    /// </summary>
    void SiluMul(Tensor gateUp, int rows, Tensor output, ActivationQuantization? quantizeFor = null);

    /// <summary>
    /// out = gelu_tanh(gate)·up over the fused projection <paramref name="gateUp"/> (Gemma's GeGLU, torch's
    /// <c>gelu(approximate="tanh")</c>), gelu rounded to the model dtype before the product, as <see cref="SiluMul"/>.
    /// </summary>
    void GeluTanhMul(Tensor gateUp, int rows, Tensor output, ActivationQuantization? quantizeFor = null);

    /// <summary>
    /// A gated MLP's first half: output = act(x·gateᵀ + b)·(x·upᵀ + b) with <paramref name="gateUp"/> stacking gate over
    /// up, act SiLU or, with <paramref name="geluTanh"/>, gelu(tanh). The same values as <see cref="Linear"/> into
    /// <paramref name="gateUpBuffer"/> ([rows, 2·intermediate]) followed by <see cref="SiluMul"/> or
    /// <see cref="GeluTanhMul"/>, which is what this does unless the backend has one kernel for both (the CUDA backend at
    /// a few rows: one launch less per layer). <paramref name="quantizeOutputFor"/>: the down projection's input
    /// quantization when it is FP8, for the activation's <c>quantizeFor</c>.
    /// </summary>
    void GatedLinear(Tensor x, int rows, Tensor gateUp, Tensor? bias, ActivationQuantization? activations, bool geluTanh, Tensor gateUpBuffer, Tensor output,
        ActivationQuantization? quantizeOutputFor = null) =>
        LinearThenActivation(this, x, rows, gateUp, bias, activations, geluTanh, gateUpBuffer, output, quantizeOutputFor);

    /// <summary><see cref="GatedLinear"/> as two steps: the GEMM into the buffer, then the activation kernel.</summary>
    public static void LinearThenActivation(IModelBackend b, Tensor x, int rows, Tensor gateUp, Tensor? bias, ActivationQuantization? activations, bool geluTanh, Tensor gateUpBuffer, Tensor output,
        ActivationQuantization? quantizeOutputFor)
    {
        b.Linear(x, rows, gateUp, bias, gateUpBuffer, activations);
        if (geluTanh)
        {
            b.GeluTanhMul(gateUpBuffer, rows, output, quantizeOutputFor);
        }
        else
        {
            b.SiluMul(gateUpBuffer, rows, output, quantizeOutputFor);
        }
    }

    /// <summary>
    /// A sparse mixture-of-experts MLP (Mixtral, Qwen2-MoE, Qwen3-MoE) over the first <paramref name="rows"/> rows. Per row:
    /// softmax in fp32 of the router logits (<paramref name="routerLogits"/>: [rows, experts] in the activation dtype, as the
    /// router GEMM writes them), the <paramref name="topK"/> most probable experts (ties: the lower id), their
    /// probabilities renormalized to sum 1 when <paramref name="normalize"/> (Mixtral; Qwen's <c>norm_topk_prob</c>) and
    /// rounded to the activation dtype; then output[r] = Σ weight·down_e(silu(gate_e(x[r]))·up_e(x[r])) summed in fp32 and
    /// rounded once, each expert's silu rounded before its product as in <see cref="SiluMul"/>. <paramref name="gateUp"/>
    /// stacks every expert's gate then up projection ([experts·2·intermediate, hidden], expert 0 first), and
    /// <paramref name="down"/> every expert's down projection ([experts·hidden, intermediate]). <paramref name="output"/> may
    /// be <paramref name="x"/> itself. <paramref name="experts"/> (gpt-oss) adds each expert's biases and swaps SiLU·mul for
    /// the clamped SwiGLU (<see cref="ExpertOptions"/>). Both weights may be MXFP4 from <see cref="LoadMxfp4"/>
    /// (<see cref="Tensor.Mxfp4"/>; their shapes then count code bytes), computed as their decoded bf16 values, or 4-bit
    /// codes from <see cref="LoadExperts"/> (<see cref="Tensor.Int4"/>; shapes in 32-bit words), computed as their values
    /// dequantized into the model dtype.
    /// </summary>
    void MoeExperts(Tensor x, int rows, Tensor routerLogits, int topK, bool normalize, Tensor gateUp, Tensor down, Tensor output, ExpertOptions? experts = null);

    /// <summary>
    /// output[r, :] += sigmoid(gate[r]) · x[r, :] over the first <paramref name="rows"/> rows, in fp32 and rounded once
    /// (Qwen2-MoE's shared expert, scaled by its one-column gate <paramref name="gate"/> = [rows, 1]).
    /// </summary>
    void AddSigmoidGated(Tensor x, Tensor gate, int rows, Tensor output);

    /// <summary>x[r, :] ×= factor for the first <paramref name="rows"/> rows, rounded once to x's dtype (Granite's multipliers).</summary>
    void Scale(Tensor x, int rows, float factor);

    /// <summary>
    /// Soft-capping of fp32 logits, x = cap · tanh(x / cap) over the first <paramref name="rows"/> rows (Gemma 2's
    /// <c>final_logit_softcapping</c>).
    /// </summary>
    void SoftCap(Tensor x, int rows, float cap);

    /// <summary>
    /// Paged attention of this step's queries over the layer's cache (GQA; causal or bidirectional as
    /// <see cref="AttentionSpec.Causal"/> says; optional sliding window). With
    /// <paramref name="sinks"/> ([heads], gpt-oss's learned attention sinks) each head's softmax denominator also holds
    /// e^sink, a logit no value row goes with: softmax([scores, sink]) with the sink's column dropped.
    /// </summary>
    void Attention(int layer, Tensor q, Tensor output, AttentionSpec spec, Tensor? sinks = null);

    /// <summary>output[i] = x[batch.LogitsRows[first + i]] for i in 0..count-1.</summary>
    void GatherLogitsRows(Tensor x, int first, int count, Tensor output);

    /// <summary>
    /// y[r, offset .. offset + x.Columns) = x[r, ..] for the first <paramref name="rows"/> rows: <paramref name="x"/> laid
    /// into a column slice of the wider <paramref name="y"/> (both in the activation dtype), as a concatenation along the
    /// last dimension is built (EAGLE-3's target hidden states, a draft head's [embedding, hidden] input).
    /// </summary>
    void CopyColumns(Tensor x, int rows, Tensor y, int offset);

    /// <summary>
    /// y[destinationRow + i] = x[sourceRow + i] for i in 0..rows-1: whole rows of the same width and dtype. x may belong
    /// to another backend on the same device (a vision tower's features, merged into the language model's input rows).
    /// </summary>
    void CopyRows(Tensor x, int sourceRow, Tensor y, int destinationRow, int rows);

    /// <summary>Writes host values into the leading elements of x, rounded once to its dtype (a vision tower's patches).</summary>
    void CopyFromHost(ReadOnlySpan<float> source, Tensor x);

    /// <summary>Copies the first rows of an fp32 buffer (the logits) to the host.</summary>
    void CopyToHost(Tensor x, int rows, Span<float> destination);

    /// <summary>The checks <see cref="CopyRows"/> makes on every backend.</summary>
    static void CheckCopyRows(Tensor x, int sourceRow, Tensor y, int destinationRow, int rows)
    {
        if (x.Columns != y.Columns || x.DType != y.DType || sourceRow < 0 || destinationRow < 0 || rows < 0
            || sourceRow + rows > x.Rows || destinationRow + rows > y.Rows)
        {
            throw new ArgumentException($"Cannot copy rows [{sourceRow}, {sourceRow + rows}) of {x} to rows from {destinationRow} of {y}.");
        }
    }

    /// <summary>
    /// Queues the copy of a buffer's first <paramref name="rows"/> rows (fp32, or the 16-bit activation dtype, which comes
    /// back widened to fp32), behind the work queued so far, into rows
    /// [<paramref name="atRow"/>, atRow + rows) of host slot <paramref name="slot"/> (0 or 1), memory the backend owns;
    /// <see cref="ReadHostSlot"/> waits for the slot's copies. A step's rows go to one slot while the host reads the
    /// previous step's from the other, so the device runs a step while the host takes the last one's results (async
    /// pooling). The first copy of a step (atRow 0) makes room for <paramref name="stepRows"/> rows: a slot is reused
    /// only after it was read.
    /// </summary>
    void QueueCopyToHost(Tensor x, int rows, int slot, int atRow, int stepRows);

    /// <summary>The first <paramref name="count"/> values of a slot once its queued copies are done; valid until the slot's next copy.</summary>
    ReadOnlySpan<float> ReadHostSlot(int slot, int count);

    /// <summary>
    /// The step's <paramref name="count"/> <see cref="ForwardBatch.LogitsRows"/> of <paramref name="x"/> queued to host slot
    /// <paramref name="slot"/> (a pooling model's rows): gathered into <paramref name="buffer"/> as many rows at a time
    /// as it holds, each chunk's copy queued behind its gather, so the next gather may reuse the buffer at once.
    /// </summary>
    void QueueLogitsRowsToHost(Tensor x, int count, Tensor buffer, int slot)
    {
        for (int first = 0; first < count; first += buffer.Rows)
        {
            int chunk = Math.Min(buffer.Rows, count - first);
            GatherLogitsRows(x, first, chunk, buffer);
            QueueCopyToHost(buffer, chunk, slot, first, count);
        }
    }

    /// <summary>Whether the backend queues its work on a device that runs it while the host goes on (a GPU), so steps may overlap the host's work.</summary>
    bool QueuesWork { get; }
}

/// <summary>
/// Rotary embedding of one model: inverse frequencies, the rotated width, yarn's attention scaling, and the number
/// of positions it serves (a GPU precomputes cos/sin for positions 0..MaxPositions−1).
/// </summary>
public sealed record RopeSpec(float[] InverseFrequencies, int RotaryDim, float AttentionScaling, int MaxPositions)
{
    /// <summary>
    /// Which of the model's RoPE tables this is (0, 1, …): a model whose layers rotate differently (Gemma 3's local and
    /// global layers) has one per kind, and a backend that precomputes cos/sin keeps one table per slot, so layers that
    /// alternate between them never rebuild it (and a recorded graph keeps pointing at both).
    /// </summary>
    public int Slot { get; init; }

    /// <summary>
    /// Multi-axis RoPE (Qwen2-VL's M-RoPE, the Qwen vision towers' 2-D RoPE): frequency pairs [0, s0) rotate by a row's
    /// position on axis 0, the next s1 by axis 1, the next s2 by axis 2, taken from <see cref="ForwardBatch.RopePositions"/>
    /// (<see cref="Axes"/> per row); the sections add up to <see cref="RotaryDim"/> / 2. Null: one axis, the row's
    /// position. transformers builds cos and sin from the whole rotation for every axis and takes each section from its
    /// axis's, which is what rotating each pair by its own axis's position computes.
    /// </summary>
    public int[]? Sections { get; init; }

    /// <summary>Position axes per row in <see cref="ForwardBatch.RopePositions"/>: the <see cref="Sections"/>' count, or 1.</summary>
    public int Axes => Sections?.Length ?? 1;
}

/// <summary>
/// How gpt-oss's experts differ from the SwiGLU experts of <see cref="IModelBackend.MoeExperts"/>: a bias after each
/// projection, <see cref="GateUpBias"/> ([experts·2·intermediate], each expert's gate then up part, as the weights) and
/// <see cref="DownBias"/> ([experts·hidden]), added before the routing weight scales the expert's output; and the clamped
/// SwiGLU: gate ≤ limit, −limit ≤ up ≤ limit, out = (up + 1) · gate · sigmoid(α · gate) with α = <see cref="SwigluAlpha"/>.
/// </summary>
public sealed record ExpertOptions(Tensor GateUpBias, Tensor DownBias, float SwigluLimit)
{
    /// <summary>gpt-oss's α, a constant of its modeling code (not in config.json).</summary>
    public const float SwigluAlpha = 1.702f;
}

/// <summary>Attention of one layer: its shape, scale, window and options.</summary>
public sealed record AttentionSpec(int NumHeads, int NumKvHeads, int HeadDim, float Scale, int SlidingWindow)
{
    /// <summary>
    /// Gemma 2's <c>attn_logit_softcapping</c>: each score (scale · q·k) becomes cap · tanh(score / cap) before the
    /// mask and softmax; 0 leaves the scores alone.
    /// </summary>
    public float LogitSoftCap { get; init; }

    /// <summary>
    /// Whether the q/k norms of <see cref="IModelBackend.PrepareAttention"/> are Gemma's (weight 1 + w, one rounding:
    /// <see cref="IModelBackend.GemmaRmsNorm"/>) rather than Qwen3's Llama-style RMSNorm.
    /// </summary>
    public bool GemmaQkNorm { get; init; }

    /// <summary>
    /// Causal attention (decoders): a query row at position p sees keys 0..p (with a sliding window W only those
    /// above p − W). False is bidirectional attention (an encoder's, EmbeddingGemma's): a row sees all of its
    /// sequence's keys 0..seqLen − 1, or with a window W those less than W positions away on either side (|p − k| &lt; W,
    /// transformers' <c>_bidirectional_window_overlay</c>); the whole sequence must then be in the step (query length
    /// = sequence length).
    /// </summary>
    public bool Causal { get; init; } = true;
}
