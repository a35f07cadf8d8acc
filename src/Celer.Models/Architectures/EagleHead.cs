using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Rope;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// An EAGLE draft head (EAGLE-1 or EAGLE-3, <see cref="EagleKind"/>): one Llama layer that predicts the token after next
/// from a token's embedding and the hidden state at the position before it, on a backend of its own (its own one-layer
/// KV cache) sharing the target's device, so it reads the target's embedding table and captured hidden states in place.
/// <para>
/// Its KV entry at position p is made from (hidden state at p, embedding of token p + 1), and its output there guesses
/// token p + 2. A step's first pass (<see cref="ForwardFromTarget"/>) takes the hidden states the target just computed;
/// each further pass (<see cref="ForwardChained"/>) feeds each row the head's own output of the pass before (the
/// pre-norm residual stream, as vLLM feeds it back) with the token that pass guessed.
/// </para>
/// </summary>
public sealed class EagleHead
{
    private readonly EagleConfig _config;
    private readonly IModelBackend _backend;
    private readonly Tensor _embedTokens;
    private readonly Tensor _lmHead;
    private readonly Tensor? _fc, _fcBias;
    private readonly Tensor? _inputNorm, _hiddenNorm, _finalNorm;   // EAGLE-3's; EAGLE-1's HASS input norms reuse the first two
    private readonly Tensor _postAttentionNorm;
    private readonly SelfAttention _attention;
    private readonly GatedMlp _mlp;
    private readonly AttentionSpec _attentionSpec;
    private readonly RopeSpec _rope;
    private readonly Activations _act;
    private readonly Tensor _embeds, _pair, _hiddenIn, _chainHidden;
    private Tensor? _draftEmbedTokens;   // the target's embedding rows of the draft vocabulary, in draft ids (see ForwardChained)
    private readonly IStepGraphs? _graphs;   // chained passes recorded per decode bucket (null: eager, or a backend without graphs)
    private readonly StepGraphOptions? _graphOptions;
    private readonly PaddedDecodeBatches? _paddedBatches;
    private bool _recorded;

    /// <param name="weights">The head's checkpoint (layer tensors under <c>midlayer.</c>, <c>layers.0.</c> or <c>model.layers.0.</c>).</param>
    /// <param name="randomWeights">
    /// The source makes every tensor up (<c>--load-format dummy</c>) and so claims every name: the head then shares the
    /// target's embedding and its draft vocabulary is the target's first ids.
    /// </param>
    /// <param name="maxPositions">The longest context served: the head's RoPE table covers it whatever its config's max_position_embeddings says.</param>
    /// <param name="graphs">The target's decode graph sizes, which the chained passes (one token per sequence) are recorded for (null: eager).</param>
    public EagleHead(
        EagleConfig config, IWeightSource weights, IModelBackend backend, DecoderModel target, int maxNumTokens, int maxLogitsRows, int maxPositions, bool randomWeights,
        StepGraphOptions? graphs = null)
    {
        ModelConfig c = config.Layer;
        int hidden = c.HiddenSize;
        if (config.TargetHiddenSize != target.Config.HiddenSize || (config.Kind == EagleKind.Eagle && hidden != target.Config.HiddenSize))
        {
            throw new ModelLoadException($"The EAGLE head reads hidden states of width {config.TargetHiddenSize}, but the target's are {target.Config.HiddenSize} wide.");
        }

        if (c.VocabSize != target.Config.VocabSize)
        {
            throw new ModelLoadException($"The EAGLE head's vocab_size is {c.VocabSize}, the target's {target.Config.VocabSize}: a head must use its target's tokenizer.");
        }

        if (c.Rope.RopeType is RopeType.Dynamic or RopeType.LongRope)
        {
            throw new ModelLoadException($"The EAGLE head's RoPE ({c.Rope.RopeType}) follows the sequence length, which Celer's heads do not.");
        }

        _config = config;
        _backend = backend;
        string layer = LayerPrefix(weights);
        Tensor Load(string name, params int[] shape) => backend.LoadWeight(weights.Get(name, shape));
        string? Top(string name) => weights.Contains(name) ? name : weights.Contains("model." + name) ? "model." + name : null;

        _embedTokens = !randomWeights && Top("embed_tokens.weight") is { } embed ? Load(embed, c.VocabSize, hidden) : target.EmbedTokens;
        ArchitectureSpec llama = ModelRegistry.Resolve(c with { Architecture = "LlamaForCausalLM" });
        var shard = new TensorParallelShard(c, null);
        int fcInput;
        if (config.Kind == EagleKind.Eagle3)
        {
            fcInput = config.TargetLayers(target.Config.NumHiddenLayers).Length * config.TargetHiddenSize;
            _fc = Load(Top("fc.weight") ?? "fc.weight", hidden, fcInput);
            _inputNorm = Load(layer + "input_layernorm.weight", hidden);
            _hiddenNorm = Load(layer + "hidden_norm.weight", hidden);
            _finalNorm = Load(Top("norm.weight") ?? "norm.weight", hidden);
            // A head whose draft vocabulary is the target's may leave its LM head out and share the target's.
            _lmHead = weights.Contains("lm_head.weight") || config.DraftVocabSize != c.VocabSize
                ? Load("lm_head.weight", config.DraftVocabSize, hidden)
                : target.LmHead;
            _attention = new SelfAttention(0, layer + "self_attn.", c, llama, weights, backend, shard, inputWidth: 2 * hidden);
            DraftToTarget = randomWeights || !weights.Contains("d2t") ? null : DraftIds(weights.Get("d2t", config.DraftVocabSize), c.VocabSize);
            if (DraftToTarget is null && config.DraftVocabSize != c.VocabSize && !randomWeights)
            {
                throw new ModelLoadException($"The EAGLE-3 head has a draft vocabulary of {config.DraftVocabSize} tokens but no 'd2t' tensor mapping it to the target's {c.VocabSize}.");
            }
        }
        else
        {
            fcInput = 2 * hidden;
            _fc = Load(Top("fc.weight") ?? "fc.weight", hidden, fcInput);
            _fcBias = Top("fc.bias") is { } bias ? Load(bias, hidden) : null;
            if (config.NormalizesInputs)
            {
                _inputNorm = Load(Top("embedding_layernorm.weight") ?? "embedding_layernorm.weight", hidden);
                _hiddenNorm = Load(Top("hidden_states_layernorm.weight") ?? "hidden_states_layernorm.weight", hidden);
            }

            _lmHead = target.LmHead;
            _attention = new SelfAttention(0, layer + "self_attn.", c, llama, weights, backend, shard);
        }

        _postAttentionNorm = Load(layer + "post_attention_layernorm.weight", hidden);
        _mlp = new GatedMlp(layer + "mlp.", hidden, c.IntermediateSize, c.MlpBias, fused: false, geluTanh: false, weights, backend, shard);
        _attentionSpec = new AttentionSpec(c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, 1f / MathF.Sqrt(c.HeadDim), 0);
        int positions = Math.Max(maxPositions, c.MaxPositionEmbeddings);
        RopeTable table = RotaryEmbedding.Compute(c.Rope, c.HeadDim, c.MaxPositionEmbeddings, positions);
        _rope = new RopeSpec(table.InverseFrequencies, table.RotaryDim, table.AttentionScaling, positions);

        DType t = backend.ActivationDType;
        _act = new Activations(c with { VocabSize = LogitsWidth }, backend, maxNumTokens, maxLogitsRows);
        _embeds = backend.Allocate("eagle_embeds", t, maxNumTokens, hidden);
        _pair = backend.Allocate("eagle_pair", t, maxNumTokens, 2 * hidden);
        _hiddenIn = backend.Allocate("eagle_hidden_in", t, maxNumTokens, hidden);
        _chainHidden = backend.Allocate("eagle_chain_hidden", t, maxLogitsRows, hidden);
        MaxLogitsRows = maxLogitsRows;
        MaxNumTokens = maxNumTokens;
        int largest = Math.Min(maxLogitsRows, maxNumTokens);   // no pass holds more sequences
        if (graphs is { CaptureSizes.Count: > 0 } && graphs.CaptureSizes[0] <= largest && backend is IStepGraphs stepGraphs)
        {
            _graphs = stepGraphs;
            _graphOptions = graphs with { CaptureSizes = [.. graphs.CaptureSizes.Where(size => size <= largest)] };
            _paddedBatches = new PaddedDecodeBatches(graphs.BlockTableStride);
        }
    }

    public EagleConfig Config => _config;

    /// <summary>The attention shape of the head's one-layer KV cache.</summary>
    public AttentionSpec Attention => _attentionSpec;

    /// <summary>Columns of the logits: the draft vocabulary (EAGLE-3) or the target's (EAGLE-1).</summary>
    public int LogitsWidth => _config.Kind == EagleKind.Eagle3 ? _config.DraftVocabSize : _config.Layer.VocabSize;

    public int MaxLogitsRows { get; }

    public int MaxNumTokens { get; }

    /// <summary>EAGLE-3: the target id of each draft-vocabulary id (from the checkpoint's <c>d2t</c> offsets); null: the same ids.</summary>
    public int[]? DraftToTarget { get; }

    /// <summary>
    /// The step's first pass, over the target's rows: <paramref name="batch"/> has the target step's layout with each
    /// row's token replaced by the one after it (rows with none write no KV: slot −1), and
    /// <paramref name="targetHidden"/> (what <see cref="DecoderModel.CaptureHiddenStates"/> returned) holds the target's
    /// hidden states of those rows. Returns the fp32 logits of <see cref="ForwardBatch.LogitsRows"/>, valid until the next
    /// pass, whose pre-norm outputs the next <see cref="ForwardChained"/> starts from.
    /// </summary>
    public Tensor ForwardFromTarget(ForwardBatch batch, Tensor targetHidden)
    {
        int rows = batch.NumTokens;
        _backend.BeginStep(batch);
        if (_config.Kind == EagleKind.Eagle3)
        {
            _backend.Linear(targetHidden, rows, _fc!, null, _hiddenIn);
            return Forward(batch, rows, _hiddenIn);
        }

        return Forward(batch, rows, targetHidden);
    }

    /// <summary>
    /// A further pass: row i of <paramref name="batch"/> (one token per sequence) continues row i of the pass before
    /// (<see cref="ForwardBatch.LogitsRows"/> order), fed that row's pre-norm output and the token it guessed.
    /// <paramref name="draftIds"/>: the batch's tokens are the head's own draft-vocabulary ids (its device sampler's
    /// output of the pass before, gathered on the device through <see cref="ForwardBatch.PendingTokens"/>), not target ids.
    /// </summary>
    public Tensor ForwardChained(ForwardBatch batch, bool draftIds = false)
    {
        Tensor table = draftIds && DraftToTarget is not null ? DraftEmbedTokens() : _embedTokens;
        if (_recorded && batch.NumTokens <= _graphOptions!.MaxBatchSize && batch.MaxBlocksPerSeq <= _graphOptions.BlockTableStride)
        {
            return ChainedWithGraph(batch, table);
        }

        _backend.BeginStep(batch);
        return Forward(batch, batch.NumTokens, _chainHidden, table);
    }

    /// <summary>
    /// Records the chained pass's graph of every decode size now, largest first, as the target's are recorded (its step
    /// buffers sized for the largest pass first, the draft embedding table and the RoPE table made by an eager pass
    /// before): the passes the device feeds with draft ids. Returns the sizes recorded (none when graphs are off).
    /// </summary>
    public IReadOnlyList<int> CaptureGraphs()
    {
        if (_graphs is null)
        {
            return [];
        }

        StepGraphOptions options = _graphOptions!;
        _graphs.ReserveStepMetadata(MaxNumTokens, MaxLogitsRows, options.BlockTableStride);
        ForwardChained(ForwardBatch.Padding(1), draftIds: true);
        Tensor table = DraftToTarget is not null ? DraftEmbedTokens() : _embedTokens;
        for (int i = options.CaptureSizes.Count - 1; i >= 0; i--)
        {
            ChainedWithGraph(ForwardBatch.Padding(options.CaptureSizes[i]), table);
        }

        _recorded = true;
        return options.CaptureSizes;
    }

    /// <summary>A chained pass padded to its bucket, its graph replayed or recorded; the real rows' logits come first.</summary>
    private Tensor ChainedWithGraph(ForwardBatch batch, Tensor table)
    {
        int bucket = _graphOptions!.Bucket(batch.NumTokens);
        ForwardBatch padded = _paddedBatches!.Pad(batch, bucket);
        _backend.BeginStep(padded);
        if (!_graphs!.TryReplay(bucket))
        {
            _graphs.BeginCapture();
            try
            {
                Forward(padded, bucket, _chainHidden, table);
            }
            catch
            {
                _graphs.AbortCapture();
                throw;
            }

            _graphs.EndCapture(bucket);
        }

        return _act.Logits;
    }

    /// <summary>
    /// The embedding table indexed by draft ids: row i is the target's row DraftToTarget[i], gathered once on the device
    /// (the backend's embedding lookup, a budget of rows at a time), so a pass fed the sampler's draft ids on the device
    /// needs no mapping on the host in between.
    /// </summary>
    private Tensor DraftEmbedTokens()
    {
        if (_draftEmbedTokens is not null)
        {
            return _draftEmbedTokens;
        }

        int[] map = DraftToTarget!;
        int width = _config.Layer.HiddenSize;
        // In the activation dtype the embedding lookup writes (the model dtype on a GPU, whose weights are kept in it).
        Tensor table = _backend.Allocate("eagle_draft_embed_tokens", _backend.ActivationDType, map.Length, width);
        long rowBytes = (long)width * table.DType.ByteSize();
        for (int first = 0; first < map.Length; first += MaxNumTokens)
        {
            int count = Math.Min(MaxNumTokens, map.Length - first);
            _backend.BeginStep(ForwardBatch.Padding(count) with { TokenIds = map[first..(first + count)] });
            _backend.Embedding(_embedTokens, new Tensor(table.Name, table.Data + (nint)(first * rowBytes), table.DType, [count, width]));
        }

        return _draftEmbedTokens = table;
    }

    private Tensor Forward(ForwardBatch batch, int rows, Tensor hidden) => Forward(batch, rows, hidden, _embedTokens);

    private Tensor Forward(ForwardBatch batch, int rows, Tensor hidden, Tensor embedTokens)
    {
        IModelBackend b = _backend;
        float eps = (float)_config.Layer.RmsNormEps;
        int width = _config.Layer.HiddenSize;
        b.Embedding(embedTokens, _embeds);
        if (_config.Kind == EagleKind.Eagle3)
        {
            // [input_layernorm(embedding), hidden_norm(hidden)] into attention; the residual starts from the hidden state
            // (or its norm, norm_before_residual).
            b.RmsNorm(_embeds, rows, _inputNorm!, eps, _act.Hidden);
            b.CopyColumns(_act.Hidden, rows, _pair, 0);
            b.RmsNorm(hidden, rows, _hiddenNorm!, eps, _act.Hidden);
            b.CopyColumns(_act.Hidden, rows, _pair, width);
            b.CopyColumns(_config.NormBeforeResidual ? _act.Hidden : hidden, rows, _act.Residual, 0);
        }
        else
        {
            // fc([embedding, hidden]) is the layer's input and its residual (the first layer has no input norm).
            if (_config.NormalizesInputs)
            {
                b.RmsNorm(_embeds, rows, _inputNorm!, eps, _act.Hidden);
                b.CopyColumns(_act.Hidden, rows, _pair, 0);
                b.RmsNorm(hidden, rows, _hiddenNorm!, eps, _act.Hidden);
                b.CopyColumns(_act.Hidden, rows, _pair, width);
            }
            else
            {
                b.CopyColumns(_embeds, rows, _pair, 0);
                b.CopyColumns(hidden, rows, _pair, width);
            }

            b.Linear(_pair, rows, _fc!, _fcBias, _act.Residual);
        }

        _attention.Forward(b, _act, rows, _config.Kind == EagleKind.Eagle3 ? _pair : _act.Residual, _rope, _attentionSpec, eps, _act.Hidden);
        b.AddRmsNorm(_act.Hidden, _act.Residual, rows, _postAttentionNorm, eps);
        _mlp.Forward(b, _act, rows, _act.Hidden, _act.Hidden);
        b.Add(_act.Hidden, rows, _act.Residual);

        // The logits rows' pre-norm outputs are the next pass's hidden inputs; EAGLE-3 normalizes them for its LM head,
        // EAGLE-1 hands them to the target's as they are.
        int count = batch.LogitsRows.Length;
        if (count == 0)
        {
            return _act.Logits;
        }

        b.GatherLogitsRows(_act.Residual, 0, count, _chainHidden);
        Tensor headInput = _chainHidden;
        if (_finalNorm is not null)
        {
            b.RmsNorm(_chainHidden, count, _finalNorm, eps, _act.LogitsHidden);
            headInput = _act.LogitsHidden;
        }

        b.Linear(headInput, count, _lmHead, null, _act.Logits);
        return _act.Logits;
    }

    /// <summary>
    /// The target ids of a head's draft vocabulary: <c>d2t</c> holds, per draft id i, the offset d2t[i] such that i + d2t[i]
    /// is the target's id (SpecForge's and vLLM's convention); each must land inside the target's vocabulary.
    /// </summary>
    private static int[] DraftIds(WeightTensor d2t, int vocab)
    {
        var ids = new int[d2t.Shape[0]];
        for (int i = 0; i < ids.Length; i++)
        {
            long id = i + d2t.DType switch
            {
                DType.I64 => d2t.AsSpan<long>()[i],
                DType.I32 => d2t.AsSpan<int>()[i],
                _ => throw new ModelLoadException($"The EAGLE-3 head's 'd2t' is {d2t.DType}; it must hold integers (I64 or I32)."),
            };
            if (id < 0 || id >= vocab)
            {
                throw new ModelLoadException($"The EAGLE-3 head's 'd2t' maps draft id {i} to {id}, outside the target's {vocab} tokens.");
            }

            ids[i] = (int)id;
        }

        return ids;
    }

    /// <summary>Where the checkpoint keeps its layer: EAGLE-3's <c>midlayer.</c>, or a Llama layer 0 with or without <c>model.</c>.</summary>
    private static string LayerPrefix(IWeightSource weights)
    {
        foreach (string prefix in (string[])["midlayer.", "layers.0.", "model.layers.0."])
        {
            if (weights.Contains(prefix + "post_attention_layernorm.weight"))
            {
                return prefix;
            }
        }

        throw new ModelLoadException("The EAGLE head's checkpoint has no layer: expected tensors under 'midlayer.', 'layers.0.' or 'model.layers.0.'.");
    }
}
