using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Rope;
using Celer.Models.Weights;

namespace Celer.Models.Architectures;

/// <summary>
/// The forward pass of the BERT family (BERT, RoBERTa, XLM-RoBERTa: <c>BertModel</c>, <c>XLMRobertaModel</c> and their
/// <c>…ForSequenceClassification</c>) over one flat batch of whole sequences: word + token type + absolute position
/// embeddings and a LayerNorm, then post-norm layers of bidirectional multi-head attention and a GELU MLP, every
/// projection with its bias. Keys and values pass through the paged cache within the step only: a sequence is always
/// whole in its step (no chunked prefill, no prefix cache), and its blocks go when it ends.
/// </summary>
public sealed class EncoderModel : IPoolingModel
{
    // Where checkpoints keep the encoder: bare (sentence-transformers' BertModel), or under a task model's base prefix.
    private static readonly string[] Prefixes = ["", "bert.", "roberta.", "model."];

    private readonly IModelBackend _backend;
    private readonly EncoderConfig _encoder;
    private readonly Tensor _wordEmbeddings, _positionEmbeddings;
    private readonly Tensor? _tokenTypeEmbeddings;
    private readonly Tensor _embeddingNorm, _embeddingNormBias;
    private readonly EncoderLayer[] _layers;
    private readonly RopeSpec _noRope;
    private readonly Tensor _residual, _hidden, _qkv, _q, _attentionOutput, _intermediate, _rowsHidden;

    public EncoderModel(ModelConfig config, IWeightSource weights, IModelBackend backend, int maxNumTokens, int maxLogitsRows)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxNumTokens, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxLogitsRows, 1);
        Config = config;
        _backend = backend;
        _encoder = config.Encoder ?? throw new ArgumentException($"{config.Architecture} is not an encoder.", nameof(config));
        if (config.NumKeyValueHeads != config.NumAttentionHeads || config.HeadDim * config.NumAttentionHeads != config.HiddenSize)
        {
            throw new ModelConfigException($"{config.Architecture}: an encoder's attention has hidden_size / num_attention_heads per head and no grouped keys");
        }

        MaxNumTokens = maxNumTokens;
        MaxLogitsRows = maxLogitsRows;
        int hidden = config.HiddenSize;
        string p = Prefixes.FirstOrDefault(prefix => weights.Contains(prefix + "embeddings.word_embeddings.weight"))
            ?? throw new ModelLoadException($"tensor 'embeddings.word_embeddings.weight' missing (looked for it under {string.Join(", ", Prefixes.Select(x => $"'{x}'"))})");

        _wordEmbeddings = backend.LoadWeight(weights.Get(p + "embeddings.word_embeddings.weight", config.VocabSize, hidden));
        _positionEmbeddings = backend.LoadWeight(weights.Get(p + "embeddings.position_embeddings.weight", config.MaxPositionEmbeddings, hidden));
        _tokenTypeEmbeddings = _encoder.TypeVocabSize > 0
            ? backend.LoadWeight(weights.Get(p + "embeddings.token_type_embeddings.weight", _encoder.TypeVocabSize, hidden))
            : null;
        (_embeddingNorm, _embeddingNormBias) = LoadLayerNorm(weights, backend, p + "embeddings.LayerNorm", hidden);
        _layers = [.. Enumerable.Range(0, config.NumHiddenLayers).Select(i => new EncoderLayer(i, $"{p}encoder.layer.{i}.", config, weights, backend))];

        Attention = new AttentionSpec(config.NumAttentionHeads, config.NumAttentionHeads, config.HeadDim, 1f / MathF.Sqrt(config.HeadDim), 0) { Causal = false };
        // Absolute positions: the attention's prepare step splits q/k/v and writes the cache but rotates nothing.
        RopeTable table = RotaryEmbedding.Compute(config.Rope, config.HeadDim, config.MaxPositionEmbeddings, config.MaxPositionEmbeddings);
        _noRope = new RopeSpec(table.InverseFrequencies, 0, 1f, config.MaxPositionEmbeddings);

        if (config.Classifier is { } classifier)
        {
            if (classifier.Method is not null)
            {
                throw new ModelConfigException($"{config.Architecture}: 'method' makes a classifier from a causal LM's head; an encoder's classifier is read from its checkpoint");
            }

            Classifier = EncoderConfig.IsBert(config.Architecture)
                ? SequenceClassifier.Load(weights, p + "pooler.dense", "classifier", outputBias: true, hidden, classifier.NumLabels)
                : SequenceClassifier.Load(weights, "classifier.dense", "classifier.out_proj", outputBias: true, hidden, classifier.NumLabels);
        }

        DType t = backend.ActivationDType;
        _residual = backend.Allocate("residual", t, maxNumTokens, hidden);
        _hidden = backend.Allocate("hidden", t, maxNumTokens, hidden);
        _qkv = backend.Allocate("qkv", t, maxNumTokens, 3 * hidden);
        _q = backend.Allocate("q", t, maxNumTokens, hidden);
        _attentionOutput = backend.Allocate("attn_out", t, maxNumTokens, hidden);
        _intermediate = backend.Allocate("intermediate", t, maxNumTokens, config.IntermediateSize);
        _rowsHidden = backend.Allocate("pooled_rows", t, maxLogitsRows, hidden);
    }

    public ModelConfig Config { get; }

    public AttentionSpec Attention { get; }

    public SequenceClassifier? Classifier { get; }

    public int MaxNumTokens { get; }

    public int MaxLogitsRows { get; }

    public void ForwardHidden(ForwardBatch batch, int slot)
    {
        int rows = batch.NumTokens;
        if (rows == 0 || rows > MaxNumTokens)
        {
            throw new ArgumentException($"A step has {rows} tokens; this model was set up for 1..{MaxNumTokens}.", nameof(batch));
        }

        IModelBackend b = _backend;
        float eps = (float)_encoder.LayerNormEps;
        b.BeginStep(batch);
        b.EncoderEmbedding(_wordEmbeddings, _tokenTypeEmbeddings, _positionEmbeddings, _encoder.PositionOffset, _residual);
        b.LayerNorm(_residual, rows, _embeddingNorm, _embeddingNormBias, eps, _residual);
        foreach (EncoderLayer layer in _layers)
        {
            layer.Forward(b, rows, this, eps);
        }

        b.QueueLogitsRowsToHost(_residual, batch.LogitsRows.Length, _rowsHidden, slot);
    }

    public ReadOnlySpan<float> ReadHidden(int slot, int rows) => _backend.ReadHostSlot(slot, rows * Config.HiddenSize);

    public int WarmUp(TimeSpan budget)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        ForwardBatch[] shapes = [ForwardBatch.PaddingPrefill(Math.Min(80, MaxNumTokens)), ForwardBatch.Padding(Math.Min(8, Math.Min(MaxNumTokens, MaxLogitsRows)))];
        int steps = 0;
        while (steps < shapes.Length || clock.Elapsed < budget)
        {
            ForwardHidden(shapes[steps % shapes.Length], slot: 0);
            steps++;
        }

        return steps;
    }

    /// <summary>A LayerNorm's weight and bias, under transformers' names or the TF-era <c>gamma</c>/<c>beta</c> it still renames at load.</summary>
    private static (Tensor Weight, Tensor Bias) LoadLayerNorm(IWeightSource w, IModelBackend b, string prefix, int size)
    {
        bool legacy = !w.Contains(prefix + ".weight") && w.Contains(prefix + ".gamma");
        return (b.LoadWeight(w.Get(prefix + (legacy ? ".gamma" : ".weight"), size)), b.LoadWeight(w.Get(prefix + (legacy ? ".beta" : ".bias"), size)));
    }

    /// <summary>
    /// One post-norm layer (BertLayer): residual = LayerNorm(attention(residual) + residual), then
    /// residual = LayerNorm(down(gelu(up(residual))) + residual).
    /// </summary>
    private sealed class EncoderLayer
    {
        private readonly int _index;
        private readonly Tensor _qkv, _qkvBias, _output, _outputBias, _attentionNorm, _attentionNormBias;
        private readonly Tensor _up, _upBias, _down, _downBias, _outputNorm, _outputNormBias;
        private readonly GeluForm _gelu;

        public EncoderLayer(int index, string p, ModelConfig c, IWeightSource w, IModelBackend b)
        {
            int hidden = c.HiddenSize, intermediate = c.IntermediateSize;
            WeightTensor Get(string name, params int[] shape) => w.Get(p + name, shape);
            _index = index;
            _qkv = b.LoadStacked(p + "attention.self.qkv.weight",
                Get("attention.self.query.weight", hidden, hidden), Get("attention.self.key.weight", hidden, hidden), Get("attention.self.value.weight", hidden, hidden));
            _qkvBias = b.LoadStacked(p + "attention.self.qkv.bias",
                Get("attention.self.query.bias", hidden), Get("attention.self.key.bias", hidden), Get("attention.self.value.bias", hidden));
            _output = b.LoadWeight(Get("attention.output.dense.weight", hidden, hidden));
            _outputBias = b.LoadWeight(Get("attention.output.dense.bias", hidden));
            (_attentionNorm, _attentionNormBias) = LoadLayerNorm(w, b, p + "attention.output.LayerNorm", hidden);
            _up = b.LoadWeight(Get("intermediate.dense.weight", intermediate, hidden));
            _upBias = b.LoadWeight(Get("intermediate.dense.bias", intermediate));
            _down = b.LoadWeight(Get("output.dense.weight", hidden, intermediate));
            _downBias = b.LoadWeight(Get("output.dense.bias", hidden));
            (_outputNorm, _outputNormBias) = LoadLayerNorm(w, b, p + "output.LayerNorm", hidden);
            _gelu = c.HiddenAct switch
            {
                HiddenActivation.Gelu => GeluForm.Erf,
                HiddenActivation.GeluTanh => GeluForm.Tanh,
                _ => throw new ModelConfigException($"{c.Architecture}: hidden_act must be a GELU (gelu, gelu_new, gelu_pytorch_tanh), got {c.HiddenAct}"),
            };
        }

        public void Forward(IModelBackend b, int rows, EncoderModel m, float eps)
        {
            b.Linear(m._residual, rows, _qkv, _qkvBias, m._qkv);
            b.PrepareAttention(_index, m._qkv, rows, m.Attention, m._noRope, null, null, eps, m._q);
            b.Attention(_index, m._q, m._attentionOutput, m.Attention);
            b.Linear(m._attentionOutput, rows, _output, _outputBias, m._hidden);
            b.AddLayerNorm(m._hidden, m._residual, rows, _attentionNorm, _attentionNormBias, eps);
            b.Linear(m._residual, rows, _up, _upBias, m._intermediate);
            b.Gelu(m._intermediate, rows, _gelu);
            b.Linear(m._intermediate, rows, _down, _downBias, m._hidden);
            b.AddLayerNorm(m._hidden, m._residual, rows, _outputNorm, _outputNormBias, eps);
        }
    }
}
