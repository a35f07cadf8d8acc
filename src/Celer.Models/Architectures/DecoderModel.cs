using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Rope;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// Receives logits rows <c>first .. first + count − 1</c> of a step: row-major [count, vocab] at the start of
/// <paramref name="logits"/>, a scratch buffer the handler may overwrite (samplers mask in place) and must not keep.
/// </summary>
public delegate void LogitsHandler(int first, int count, float[] logits);

/// <summary>
/// The forward pass of the Llama family (Llama, Mistral, Qwen2, Qwen3, and the members below) over one flat batch: decoder
/// layers with grouped-query attention over the paged KV cache, RoPE, and a SiLU-gated MLP. The differences
/// between members come from the <see cref="ArchitectureSpec"/>. Activation buffers are allocated once for
/// the largest step and reused.
/// </summary>
public sealed class DecoderModel : IPoolingModel
{
    private readonly ModelConfig _config;
    private readonly IModelBackend _backend;
    private readonly Tensor _embedTokens;
    private readonly Tensor _finalNorm;
    private readonly Tensor? _lmHead;   // null for a pooling model, which computes no logits
    private readonly DecoderLayer[] _layers;
    private readonly AttentionSpec _attention;
    private readonly ArchitectureSpec _spec;
    private readonly LayerSpec[] _layerSpecs;
    private readonly AttentionSpec[] _layerAttention;   // the model's, with each layer's window
    // The distinct RoPE settings of the layers (one for most models; Gemma 3's local and global ones), indexed by slot.
    private readonly RopeParameters[] _ropeParameters;
    private readonly int[] _layerRopeSlot;
    private readonly RopeSpec[] _ropes;
    private readonly RopeSpec?[] _noRopes;
    private readonly int[] _ropeSeqLens;
    private readonly float _embeddingNormalizer;   // Gemma's √hidden_size in the activation dtype
    private readonly Activations _act;
    private readonly float[] _logitsHost;
    private readonly ICollectives? _group;   // tensor parallelism (null: one rank)
    private bool _mirroring;   // inside a call the Peers run too
    private readonly IStepGraphs? _graphs;
    private readonly StepGraphOptions? _graphOptions;
    private PaddedDecodeBatches? _paddedBatches;
    private bool _ranEagerStep;
    private int[] _capturedLayers = [];   // EAGLE heads: the layers whose input each step keeps (see CaptureHiddenStates)
    private Tensor? _captured;

    /// <param name="graphs">Record decode steps as graphs when the backend can (null: always run eagerly, --enforce-eager).</param>
    /// <param name="pooling">A pooling model (<see cref="ForwardHidden"/> only): no LM head is loaded.</param>
    /// <param name="tensorParallel">
    /// This rank's group when the model is split over several (<see cref="TensorParallelShard"/>): every rank builds the
    /// model with its own backend and runs every step with the same batch; each gets the whole logits. Null: one rank.
    /// </param>
    public DecoderModel(
        ModelConfig config, IWeightSource weights, IModelBackend backend, int maxNumTokens, int maxLogitsRows, StepGraphOptions? graphs = null, bool pooling = false,
        ICollectives? tensorParallel = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxNumTokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLogitsRows, 1);
        _config = config;
        _backend = backend;
        ArchitectureSpec spec = ModelRegistry.Resolve(config);
        MaxNumTokens = maxNumTokens;
        MaxLogitsRows = maxLogitsRows;
        RefuseSplit(config, spec, tensorParallel?.Size ?? 1, pooling);
        if (config.BidirectionalAttention && !pooling)
        {
            throw new ModelLoadException($"{config.Architecture} with bidirectional attention (use_bidirectional_attention, or is_causal false) only pools: a token's state depends on the tokens after it.");
        }

        var shard = new TensorParallelShard(config, tensorParallel);   // checks that the heads and sizes divide

        _group = shard.Group;
        int hidden = config.HiddenSize;
        WeightTensor embedding = weights.Get("model.embed_tokens.weight", config.VocabSize, hidden);
        _embedTokens = backend.LoadWeight(embedding);
        _finalNorm = backend.LoadWeight(weights.Get("model.norm.weight", hidden));
        // Tied checkpoints usually omit lm_head.weight; some still store a copy, which must then be ignored. A pooling
        // model reads hidden states, and embedding checkpoints often have no head at all. Split over ranks, each holds
        // the head's rows of its part of the vocabulary.
        WeightTensor? head = pooling ? null : config.TieWordEmbeddings ? embedding : weights.Get("lm_head.weight", config.VocabSize, hidden);
        _lmHead = head is not { } rows ? null
            : shard.Size > 1 ? backend.LoadWeight(TensorParallelShard.Rows(rows, shard.VocabStart, shard.Vocab))
            : config.TieWordEmbeddings ? _embedTokens
            : backend.LoadWeight(rows);

        // A decoder classifier (Qwen3ForSequenceClassification) scores its last token with a bias-free projection.
        // vLLM's LLM-as-reranker conversion builds it from LM-head rows instead (the tied embedding, when tied).
        Classifier = !pooling || config.Classifier is not { } classifier ? null
            : classifier.Method is { } method
                ? SequenceClassifier.FromLmHead(
                    weights.Get(config.TieWordEmbeddings ? "model.embed_tokens.weight" : "lm_head.weight"),
                    classifier.FromTokenIds ?? throw new ArgumentException("classifier_from_token's ids are not resolved.", nameof(config)), method, hidden)
                : SequenceClassifier.Load(weights, null, "score", outputBias: false, hidden, classifier.NumLabels);

        _layers = new DecoderLayer[config.NumHiddenLayers];
        for (int i = 0; i < _layers.Length; i++)
        {
            _layers[i] = new DecoderLayer(i, config, spec, weights, backend, shard);
        }

        _spec = spec;
        ModelConfig local = shard.Local;   // this rank's heads: its attention and its KV cache
        _attention = new AttentionSpec(
            local.NumAttentionHeads,
            local.NumKeyValueHeads,
            config.HeadDim,
            AttentionScale(config, spec),
            config.SlidingWindow ?? 0)
        {
            LogitSoftCap = config.AttnLogitSoftcapping ?? 0f,
            GemmaQkNorm = spec.GemmaLayers && spec.QkNorm,
            Causal = !config.BidirectionalAttention,
        };
        _layerSpecs = [.. Enumerable.Range(0, config.NumHiddenLayers).Select(i => spec.Layer(config, i))];
        _layerAttention = [.. _layerSpecs.Select(l => l.SlidingWindow == _attention.SlidingWindow ? _attention : _attention with { SlidingWindow = l.SlidingWindow })];
        _ropeParameters = [.. _layerSpecs.Select(l => l.RopeParameters).Distinct()];
        if (_ropeParameters.Length == 0)
        {
            _ropeParameters = [config.Rope];
        }

        _layerRopeSlot = [.. _layerSpecs.Select(l => Array.IndexOf(_ropeParameters, l.RopeParameters))];
        _ropes = new RopeSpec[_ropeParameters.Length];
        _noRopes = new RopeSpec?[_ropeParameters.Length];
        _ropeSeqLens = new int[_ropeParameters.Length];
        for (int slot = 0; slot < _ropes.Length; slot++)
        {
            // LongRoPE starts on its short factors (transformers builds the table without a sequence length).
            _ropeSeqLens[slot] = _ropeParameters[slot].RopeType == RopeType.LongRope ? 0 : config.MaxPositionEmbeddings;
            _ropes[slot] = ComputeRope(slot, _ropeSeqLens[slot]);
        }

        // transformers makes √hidden_size a tensor of the activations' dtype (Gemma 2) or rounds it to the weights'
        // (Gemma 3), so in bf16 √3072 = 55.43 is 55.5.
        _embeddingNormalizer = RoundTo(MathF.Sqrt(hidden), backend.ActivationDType);
        _act = new Activations(local, backend, maxNumTokens, maxLogitsRows, localVocab: shard.Size > 1 ? shard.Vocab : 0);
        _logitsHost = pooling ? [] : new float[(long)maxLogitsRows * config.VocabSize];   // a pooling model's rows go through host slots

        // Dynamic NTK and LongRoPE swap their frequency table as sequences grow, which a recorded graph cannot follow.
        if (graphs is { CaptureSizes.Count: > 0 } && graphs.CaptureSizes[0] <= Math.Min(maxLogitsRows, maxNumTokens)
            && backend is IStepGraphs stepGraphs && !_ropeParameters.Any(p => RopeFollowsLength(p.RopeType)))
        {
            _graphs = stepGraphs;
            int largest = Math.Min(maxLogitsRows, maxNumTokens);   // no step holds more sequences
            _graphOptions = graphs with { CaptureSizes = [.. graphs.CaptureSizes.Where(size => size <= largest)] };
        }
    }

    public ModelConfig Config => _config;

    /// <summary>
    /// Set on rank 0 of a tensor-parallel group whose other ranks run in this process: every step (and graph recording)
    /// runs on them too, with the same batch. Owned by this model's owner, which disposes it.
    /// </summary>
    public ITensorParallelPeers? Peers { get; set; }

    public SequenceClassifier? Classifier { get; }

    /// <summary>The attention shape, which the backend's KV cache and attention kernels are set up for.</summary>
    public AttentionSpec Attention => _attention;

    public int MaxNumTokens { get; }

    public int MaxLogitsRows { get; }

    /// <summary>The token embedding table, which an EAGLE head without one of its own shares.</summary>
    internal Tensor EmbedTokens => _embedTokens;

    /// <summary>The LM head (the embedding table when tied), which an EAGLE-1 head computes its logits with.</summary>
    internal Tensor LmHead => _lmHead ?? throw new InvalidOperationException("A pooling model has no LM head.");

    /// <summary>
    /// From now on every step also keeps, for each of its rows, the hidden states an EAGLE head is fed: for each of
    /// <paramref name="layers"/> the residual stream entering that layer (what vLLM's EAGLE-3 auxiliary layers take:
    /// transformers' <c>hidden_states[i]</c>), or for <c>NumHiddenLayers</c> the final normalized hidden state (EAGLE-1's
    /// input), side by side in one [rows, layers × hidden_size] buffer, returned, which each step overwrites. Called before
    /// the decode graphs are recorded, so they copy them too.
    /// </summary>
    public Tensor CaptureHiddenStates(IReadOnlyList<int> layers)
    {
        if (layers.Count == 0 || layers.Any(l => l < 0 || l > _config.NumHiddenLayers))
        {
            throw new ArgumentException($"Hidden states to keep must name layers 0..{_config.NumHiddenLayers} ({_config.NumHiddenLayers}: the final norm's output), got [{string.Join(", ", layers)}].", nameof(layers));
        }

        if (_group is not null)
        {
            throw new InvalidOperationException("Hidden states are not kept under tensor parallelism.");
        }

        _capturedLayers = [.. layers];
        _captured = _backend.Allocate("captured_hidden", _backend.ActivationDType, MaxNumTokens, layers.Count * _config.HiddenSize);
        return _captured;
    }

    /// <summary>
    /// Runs one step. The logits of <see cref="ForwardBatch.LogitsRows"/> are handed to <paramref name="onLogits"/>
    /// in chunks of at most <see cref="MaxLogitsRows"/> rows, so a
    /// step that wants many rows (prompt logprobs of a long prompt) needs no vocabulary-sized buffer per token.
    /// </summary>
    public void Forward(ForwardBatch batch, LogitsHandler onLogits) =>
        Mirrored(new PeerCall.Forward(batch), () => ForwardOnThisRank(batch, onLogits));

    private void ForwardOnThisRank(ForwardBatch batch, LogitsHandler onLogits)
    {
        int rows = CheckRows(batch);
        UpdateDynamicRope(batch);
        int vocab = _config.VocabSize;
        if (UsesGraph(batch))
        {
            ForwardWithGraph(batch);
            _backend.CopyToHost(_act.Logits, rows, _logitsHost.AsSpan(0, rows * vocab));
            onLogits(0, rows, _logitsHost);
            return;
        }

        _backend.BeginStep(batch);
        RunLayers(rows, batch);
        for (int first = 0; first < batch.LogitsRows.Length; first += MaxLogitsRows)
        {
            int count = Math.Min(MaxLogitsRows, batch.LogitsRows.Length - first);
            ComputeLogits(first, count);
            _backend.CopyToHost(_act.Logits, count, _logitsHost.AsSpan(0, count * vocab));
            onLogits(first, count, _logitsHost);
        }

        // Recording needs lazily made state (RoPE tables) to exist already: one eager step first.
        _ranEagerStep = true;
    }

    /// <summary>
    /// Queues one step for a pooling model: the final hidden states (after the last norm, in fp32) of
    /// <see cref="ForwardBatch.LogitsRows"/> are gathered <see cref="MaxLogitsRows"/> rows at a time and queued to host
    /// slot <paramref name="slot"/> (<see cref="ReadHidden"/>); no logits are computed.
    /// </summary>
    public void ForwardHidden(ForwardBatch batch, int slot)
    {
        int rows = CheckRows(batch);
        UpdateDynamicRope(batch);
        _backend.BeginStep(batch);
        RunLayers(rows, batch);
        _backend.QueueLogitsRowsToHost(_spec.PostNorms ? _act.Residual : _act.Hidden, batch.LogitsRows.Length, _act.LogitsHidden, slot);
        _ranEagerStep = true;
    }

    public ReadOnlySpan<float> ReadHidden(int slot, int rows) => _backend.ReadHostSlot(slot, rows * _config.HiddenSize);

    /// <summary>
    /// Runs one step and leaves the logits of <see cref="ForwardBatch.LogitsRows"/> (at most
    /// <see cref="MaxLogitsRows"/>) in the returned fp32 device buffer, row i for LogitsRows[i], for a sampler
    /// that runs on the device; valid until the next step.
    /// </summary>
    public Tensor ForwardToDevice(ForwardBatch batch) =>
        Mirrored(new PeerCall.ForwardToDevice(batch), () => ForwardToDeviceOnThisRank(batch));

    private Tensor ForwardToDeviceOnThisRank(ForwardBatch batch)
    {
        int rows = CheckRows(batch);
        if (batch.LogitsRows.Length > MaxLogitsRows)
        {
            throw new ArgumentException($"A step wants {batch.LogitsRows.Length} logits rows; at most {MaxLogitsRows} stay on the device.", nameof(batch));
        }

        UpdateDynamicRope(batch);
        if (UsesGraph(batch))
        {
            ForwardWithGraph(batch);
            return _act.Logits;
        }

        _backend.BeginStep(batch);
        RunLayers(rows, batch);
        if (batch.LogitsRows.Length > 0)   // a step of prompt chunks that all stop short of their end samples nothing
        {
            ComputeLogits(0, batch.LogitsRows.Length);
        }

        _ranEagerStep = true;
        return _act.Logits;
    }

    private int CheckRows(ForwardBatch batch)
    {
        int rows = batch.NumTokens;
        if (rows == 0 || rows > MaxNumTokens)
        {
            throw new ArgumentException($"A step has {rows} tokens; this model was set up for 1..{MaxNumTokens}.", nameof(batch));
        }

        return rows;
    }

    private bool UsesGraph(ForwardBatch batch) =>
        _graphs is not null && _ranEagerStep && batch.ExternalEmbeddings is null && UniformDecodeRows(batch) is int rows
        && batch.NumSequences <= _graphOptions!.MaxBatchSize && batch.MaxBlocksPerSeq <= _graphOptions.BlockTableStride
        && _graphOptions.Bucket(batch.NumSequences) * rows <= Math.Min(MaxLogitsRows, MaxNumTokens);

    /// <summary>The most tokens per sequence a verify step's graphs are recorded for (a last token and 7 drafts).</summary>
    private const int MaxGraphRowsPerSequence = 8;

    /// <summary>
    /// Records the decode graph of every capture size now, largest first, as vLLM does at startup, so that no request
    /// waits for a recording and no buffer moves under a recorded graph later: the step metadata buffers are sized for
    /// the largest step first, one eager padding step makes lazily built state (the RoPE table), then one batch of
    /// padding rows per size is recorded. Returns the sizes recorded (none when graphs are off).
    /// </summary>
    public IReadOnlyList<int> CaptureGraphs() => Mirrored(new PeerCall.CaptureGraphs(), CaptureGraphsOnThisRank);

    private IReadOnlyList<int> CaptureGraphsOnThisRank()
    {
        if (_graphs is null)
        {
            return [];
        }

        StepGraphOptions options = _graphOptions!;
        _graphs.ReserveStepMetadata(MaxNumTokens, MaxLogitsRows, options.BlockTableStride);
        ForwardToDevice(ForwardBatch.Padding(1));
        for (int i = options.CaptureSizes.Count - 1; i >= 0; i--)
        {
            ForwardWithGraph(ForwardBatch.Padding(options.CaptureSizes[i]));
        }

        return options.CaptureSizes;
    }

    /// <summary>
    /// Runs padding steps (no KV written) of prefill and decode shapes for at least <paramref name="budget"/> and one
    /// step of each shape, so the JIT has compiled the hot kernels at their optimized tier before the first request: .NET starts a
    /// method unoptimized and recompiles it, with profile data, in the background after about 30 calls (on the CPU
    /// backend the first steps of a fresh process ran 2-18x slower than steady state). Returns the steps run.
    /// </summary>
    public int WarmUp(TimeSpan budget)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // A prompt long enough for the tiled GEMM, and decodes of one row (GEMV) and of a few (the skinny GEMM): the
        // CPU matmul's three paths. Each shape runs at least once.
        ForwardBatch[] shapes =
        [
            ForwardBatch.PaddingPrefill(Math.Min(80, MaxNumTokens)),
            ForwardBatch.Padding(1),
            ForwardBatch.Padding(Math.Min(8, Math.Min(MaxNumTokens, MaxLogitsRows))),
        ];
        int steps = 0;
        while (steps < shapes.Length || clock.Elapsed < budget)
        {
            if (_lmHead is null)
            {
                ForwardHidden(shapes[steps % shapes.Length], slot: 0);
            }
            else
            {
                ForwardToDevice(shapes[steps % shapes.Length]);
            }
            steps++;
        }

        return steps;
    }

    /// <summary>
    /// The tokens per sequence when every sequence feeds the same number, at most <see cref="MaxGraphRowsPerSequence"/>,
    /// and every row is a logits row, in order: a plain decode step (one), or a speculative verify step in which every
    /// request verifies as many drafts (its last token and its drafts). The shapes graphs are recorded for; null for others.
    /// </summary>
    private static int? UniformDecodeRows(ForwardBatch batch)
    {
        int sequences = batch.NumSequences;
        if (sequences == 0 || batch.NumTokens % sequences != 0 || batch.LogitsRows.Length != batch.NumTokens)
        {
            return null;
        }

        int rows = batch.NumTokens / sequences;
        if (rows > MaxGraphRowsPerSequence)
        {
            return null;
        }

        for (int s = 0; s <= sequences; s++)
        {
            if (batch.QueryStartLoc[s] != s * rows)
            {
                return null;
            }
        }

        for (int i = 0; i < batch.LogitsRows.Length; i++)
        {
            if (batch.LogitsRows[i] != i)
            {
                return null;
            }
        }

        return rows;
    }

    /// <summary>
    /// Pads the decode batch to its bucket and replays the bucket's graph or records it; the real rows' logits come
    /// first in the logits buffer.
    /// </summary>
    private void ForwardWithGraph(ForwardBatch batch)
    {
        int rows = UniformDecodeRows(batch)!.Value, bucket = _graphOptions!.Bucket(batch.NumSequences), padded = bucket * rows;
        _backend.BeginStep((_paddedBatches ??= new PaddedDecodeBatches(_graphOptions.BlockTableStride)).Pad(batch, bucket, rows));
        // One graph per bucket and tokens per sequence; a verify step's are recorded the first time one runs (the step
        // buffers were sized for the largest step at startup, so nothing they point at moves).
        int key = ((rows - 1) << 16) | bucket;
        if (!_graphs!.TryReplay(key))
        {
            _graphs.BeginCapture();
            try
            {
                RunLayers(padded);
                ComputeLogits(0, padded);
            }
            catch
            {
                _graphs.AbortCapture();
                throw;
            }

            _graphs.EndCapture(key);
        }
    }

    /// <param name="batch">The step, for its rows whose embeddings come from elsewhere (null: none do, as in a recorded decode step).</param>
    private void RunLayers(int rows, ForwardBatch? batch = null)
    {
        float eps = (float)_config.RmsNormEps;
        IModelBackend b = _backend;
        b.Embedding(_embedTokens, _act.Residual);
        if (batch?.ExternalEmbeddings is { } external)
        {
            // Image features replace their placeholders' embeddings before anything scales or normalizes the stream.
            int[] runs = batch.ExternalEmbeddingRows;
            for (int i = 0; i < runs.Length; i += 2)
            {
                b.CopyRows(external, runs[i], _act.Residual, runs[i], runs[i + 1]);
            }
        }

        if (_spec.PostNorms)
        {
            for (int i = 0; i < _layers.Length; i++)
            {
                CaptureLayerInput(i, rows);
                _layers[i].ForwardPostNorm(b, _act, rows, LayerRope(i), _layerAttention[i], eps);
            }

            // The final norm is OLMo-2's too, in place: the logits read their rows from the residual stream.
            b.RmsNormSlice(_act.Residual, rows, 0, _finalNorm, eps);
            CaptureLayerInput(_layers.Length, rows);
            return;
        }

        if (_spec.GemmaLayers)
        {
            b.Scale(_act.Residual, rows, _embeddingNormalizer);
            b.GemmaRmsNorm(_act.Residual, rows, _layers[0].InputNorm!, eps, _act.Hidden);
            for (int i = 0; i < _layers.Length; i++)
            {
                CaptureLayerInput(i, rows);
                Tensor nextNorm = i + 1 < _layers.Length ? _layers[i + 1].InputNorm! : _finalNorm;
                _layers[i].ForwardGemma(b, _act, rows, LayerRope(i), _layerAttention[i], eps, nextNorm);
            }

            CaptureLayerInput(_layers.Length, rows);
            return;
        }

        if (_spec.Multipliers && _config.EmbeddingMultiplier != 1f)
        {
            b.Scale(_act.Residual, rows, _config.EmbeddingMultiplier);
        }

        float residualMultiplier = _spec.Multipliers ? _config.ResidualMultiplier : 1f;
        for (int i = 0; i < _layers.Length; i++)
        {
            DecoderLayer layer = _layers[i];
            CaptureLayerInput(i, rows);
            if (i == 0)
            {
                b.RmsNorm(_act.Residual, rows, layer.InputNorm!, eps, _act.Hidden);
            }

            layer.Forward(b, _act, rows, LayerRope(i), _layerAttention[i], eps, residualMultiplier);
            if (residualMultiplier != 1f)
            {
                b.Scale(_act.Hidden, rows, residualMultiplier);
            }

            bool last = i + 1 == _layers.Length;
            b.AddRmsNorm(_act.Hidden, _act.Residual, rows, last ? _finalNorm : _layers[i + 1].InputNorm!, eps, last ? null : _layers[i + 1].AttentionInput);
        }

        CaptureLayerInput(_layers.Length, rows);
    }

    /// <summary>
    /// Keeps the rows' residual stream as it enters layer <paramref name="layer"/> (or, past the last layer, the final
    /// normalized hidden state the LM head reads) where <see cref="CaptureHiddenStates"/> asked for it.
    /// </summary>
    private void CaptureLayerInput(int layer, int rows)
    {
        for (int slot = 0; slot < _capturedLayers.Length; slot++)
        {
            if (_capturedLayers[slot] == layer)
            {
                Tensor source = layer < _layers.Length || _spec.PostNorms ? _act.Residual : _act.Hidden;
                _backend.CopyColumns(source, rows, _captured!, slot * _config.HiddenSize);
            }
        }
    }

    /// <summary>
    /// The RoPE layer <paramref name="i"/> rotates with: its slot's, or for a layer that rotates nothing (SmolLM3's NoPE
    /// layers) the slot's frequencies with no rotary dimensions, so the backend keeps the one table it built for them
    /// (following the dynamic NTK table).
    /// </summary>
    private RopeSpec LayerRope(int i)
    {
        int slot = _layerRopeSlot[i];
        RopeSpec rope = _ropes[slot];
        if (_layerSpecs[i].Rope)
        {
            return rope;
        }

        return _noRopes[slot] is { } noRope && ReferenceEquals(noRope.InverseFrequencies, rope.InverseFrequencies)
            ? noRope
            : _noRopes[slot] = rope with { RotaryDim = 0 };
    }

    /// <summary>
    /// Runs <paramref name="onThisRank"/> with the same call started on the <see cref="Peers"/> first (once: a mirrored call
    /// that makes another, as graph recording runs steps, does not start them again), and waits for them after.
    /// </summary>
    private void Mirrored(PeerCall call, Action onThisRank) => Mirrored(call, () =>
    {
        onThisRank();
        return 0;
    });

    private T Mirrored<T>(PeerCall call, Func<T> onThisRank)
    {
        if (Peers is not { } peers || _mirroring)
        {
            return onThisRank();
        }

        _mirroring = true;
        peers.Start(call);
        try
        {
            T result = onThisRank();
            peers.Join();
            return result;
        }
        catch (Exception) when (JoinAfterFailure(peers))
        {
            throw;   // not reached: the filter rethrows this rank's own failure once the peers stopped
        }
        finally
        {
            _mirroring = false;
        }
    }

    /// <summary>Waits for the peers after this rank failed (they stop at their next collective); keeps this rank's exception.</summary>
    private static bool JoinAfterFailure(ITensorParallelPeers peers)
    {
        try
        {
            peers.Join();
        }
        catch (InvalidOperationException)
        {
            // A peer's failure that followed from this rank's.
        }

        return false;
    }

    /// <summary>
    /// Refuses, by name, a model that <paramref name="size"/> tensor-parallel ranks cannot split (heads or sizes that do not
    /// divide, layers the split does not cover yet): checked before any rank is started.
    /// </summary>
    public static void CheckSplit(ModelConfig config, int size, bool pooling)
    {
        RefuseSplit(config, ModelRegistry.Resolve(config), size, pooling);
        TensorParallelShard.Check(config, size);
    }

    private static void RefuseSplit(ModelConfig config, ArchitectureSpec spec, int size, bool pooling)
    {
        if (size > 1 && TensorParallelRefusal(config, spec, pooling) is { } refusal)
        {
            throw new ModelLoadException($"{config.Architecture}: tensor parallelism does not split {refusal} yet");
        }
    }

    /// <summary>What of the model tensor parallelism cannot split yet, or null.</summary>
    private static string? TensorParallelRefusal(ModelConfig config, ArchitectureSpec spec, bool pooling) =>
        pooling ? "a pooling model"
        : config.Moe is not null ? "mixture-of-experts layers"
        : spec.PostNorms ? "OLMo-2's norms over whole projections"
        : config.Quantization is not null ? $"quantized weights ({config.Quantization.Method})"
        : null;

    /// <summary>The attention scale: Granite's multiplier, Gemma's query_pre_attn_scalar^−½, else 1/√head_dim.</summary>
    private static float AttentionScale(ModelConfig config, ArchitectureSpec spec) =>
        spec.Multipliers && config.AttentionMultiplier is { } scale ? scale
        : spec.GemmaLayers ? (float)Math.Pow(config.QueryPreAttnScalar ?? 256f, -0.5)
        : 1f / MathF.Sqrt(config.HeadDim);

    /// <summary><paramref name="value"/> rounded to nearest even in <paramref name="dtype"/>, as a torch tensor of that dtype holds it.</summary>
    private static float RoundTo(float value, DType dtype) => dtype switch
    {
        DType.BF16 => HalfConversions.Bf16ToFloat(HalfConversions.FloatToBf16(value)),
        DType.F16 => HalfConversions.HalfToFloat(HalfConversions.FloatToHalf(value)),
        _ => value,
    };

    /// <summary>Logits of LogitsRows[first .. first + count − 1] into the logits buffer (still on the backend).</summary>
    private void ComputeLogits(int first, int count)
    {
        _backend.GatherLogitsRows(_spec.PostNorms ? _act.Residual : _act.Hidden, first, count, _act.LogitsHidden);
        Tensor head = _lmHead ?? throw new InvalidOperationException("A pooling model computes no logits.");
        if (_group is null)
        {
            _backend.Linear(_act.LogitsHidden, count, head, null, _act.Logits);
        }
        else
        {
            _backend.Linear(_act.LogitsHidden, count, head, null, _act.LocalLogits!);
            _group.AllGatherColumns(_act.LocalLogits!, count, _act.Logits);
        }

        if (_spec.Multipliers && _config.LogitsScaling != 1f)
        {
            // transformers divides; a reciprocal that is not exact (a scaling that is no power of two) is 1 ulp off.
            _backend.Scale(_act.Logits, count, 1f / _config.LogitsScaling);
        }

        if (_config.FinalLogitSoftcapping is { } cap)
        {
            _backend.SoftCap(_act.Logits, count, cap);
        }
    }

    /// <summary>RoPE whose frequencies depend on the sequence length so far: dynamic NTK and LongRoPE.</summary>
    private static bool RopeFollowsLength(RopeType type) => type is RopeType.Dynamic or RopeType.LongRope;

    /// <summary>
    /// Dynamic NTK RoPE and LongRoPE are recomputed from the sequence length the way transformers does it per forward
    /// call: from the largest position in the step, dynamic NTK once it passes max_position_embeddings, LongRoPE when
    /// it crosses the original context (short factors below, long above).
    /// </summary>
    private void UpdateDynamicRope(ForwardBatch batch)
    {
        for (int slot = 0; slot < _ropes.Length; slot++)
        {
            RopeParameters p = _ropeParameters[slot];
            if (!RopeFollowsLength(p.RopeType))
            {
                continue;
            }

            int longest = batch.Positions.Max() + 1;
            int seqLen = p.RopeType == RopeType.Dynamic ? Math.Max(_config.MaxPositionEmbeddings, longest) : longest;
            int original = p.OriginalMaxPositionEmbeddings ?? _config.MaxPositionEmbeddings;
            int current = _ropeSeqLens[slot];
            bool changed = p.RopeType == RopeType.Dynamic ? seqLen != current : seqLen > original != current > original;
            if (changed)
            {
                _ropes[slot] = ComputeRope(slot, seqLen);
                _ropeSeqLens[slot] = seqLen;
            }
        }
    }

    /// <summary>The RoPE of a slot for a sequence length; its table covers max_position_embeddings positions at least.</summary>
    private RopeSpec ComputeRope(int slot, int seqLen)
    {
        RopeTable table = RotaryEmbedding.Compute(_ropeParameters[slot], _config.HeadDim, _config.MaxPositionEmbeddings, seqLen);
        return new RopeSpec(table.InverseFrequencies, table.RotaryDim, table.AttentionScaling, Math.Max(seqLen, _config.MaxPositionEmbeddings))
        {
            Slot = slot,
        };
    }

}
