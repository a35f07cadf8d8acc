using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Rope;
using Celer.Models.Weights;

namespace Celer.Models.Multimodal;

/// <summary>
/// LLaVA's image side (transformers' <c>LlavaModel.get_image_features</c>): a CLIP or SigLIP vision transformer over the
/// image's patches, the hidden states of the configured layers (the first row dropped by the "default" strategy), and
/// the two-layer projector into the language model's hidden size.
/// </summary>
/// <remarks>
/// CLIP (<c>CLIPVisionTransformer</c>): a patch convolution whose kernel equals its stride, so each patch is one row of a
/// matmul (the patches are cut on the host); the class embedding in front; learned absolute positions; a LayerNorm
/// (<c>pre_layrnorm</c>, sic); pre-norm layers of bidirectional attention and a quick-GELU MLP, every projection with its
/// bias. SigLIP (<c>SiglipVisionTransformer</c>) is the same without the class token and the first LayerNorm, with a
/// bias on the patch convolution and a tanh GELU. Only the layers up to the deepest one read run (vLLM drops the rest at
/// load as well); <c>post_layernorm</c> and SigLIP's pooling head, which LLaVA never reads, are not loaded. Each image
/// is one sequence of the tower's own paged cache, whole in its pass.
/// </remarks>
public sealed class LlavaImageEncoder : IImageEncoder
{
    private static readonly string[] TowerPrefixes = ["vision_tower.vision_model.", "vision_tower.", "model.vision_tower.vision_model.", "model.vision_tower."];
    private static readonly string[] ProjectorPrefixes = ["multi_modal_projector.", "model.multi_modal_projector."];
    private const int BlockSize = 16;

    private readonly IModelBackend _backend;
    private readonly VisionLanguageConfig _config;
    private readonly VisionTowerConfig _tower;
    private readonly int _sequence, _blocksPerImage;
    private readonly Tensor _patchWeight, _positions;
    private readonly Tensor? _patchBias, _preNorm, _preNormBias;
    private readonly ClipLayer[] _layers;
    private readonly Tensor _linear1, _linear2;
    private readonly Tensor? _linear1Bias, _linear2Bias;
    private readonly AttentionSpec _attention;
    private readonly RopeSpec _noRope;
    private readonly Tensor _patches, _residual, _normed, _hidden, _qkv, _q, _attentionOutput, _intermediate, _selected, _compact, _projected;
    private readonly float[] _patchRows;

    public LlavaImageEncoder(VisionLanguageConfig config, int textHidden, IWeightSource weights, IModelBackend backend, int maxImagesPerPass)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxImagesPerPass, 1);
        _config = config;
        _tower = config.Vision;
        _backend = backend;
        MaxImagesPerPass = maxImagesPerPass;
        VisionTowerConfig c = _tower;
        int hidden = c.HiddenSize, patchValues = c.NumChannels * c.PatchSize * c.PatchSize;
        _sequence = c.Sequence;
        _blocksPerImage = (_sequence + BlockSize - 1) / BlockSize;
        string p = TowerPrefixes.FirstOrDefault(prefix => weights.Contains(prefix + "embeddings.patch_embedding.weight"))
            ?? throw new ModelLoadException($"tensor 'embeddings.patch_embedding.weight' of the vision tower missing (looked under {string.Join(", ", TowerPrefixes.Select(x => $"'{x}'"))})");
        string j = ProjectorPrefixes.FirstOrDefault(prefix => weights.Contains(prefix + "linear_1.weight"))
            ?? throw new ModelLoadException($"tensor 'linear_1.weight' of the projector missing (looked under {string.Join(", ", ProjectorPrefixes.Select(x => $"'{x}'"))})");

        // Conv2d's [hidden, channels, kh, kw] is a [hidden, channels·kh·kw] matmul over patches cut in that order.
        _patchWeight = backend.LoadWeight(weights.Get(p + "embeddings.patch_embedding.weight", hidden, c.NumChannels, c.PatchSize, c.PatchSize).Reshaped(hidden, patchValues));
        _positions = PositionTable(backend, weights, p, c);
        if (c.PatchBias)
        {
            _patchBias = backend.LoadWeight(weights.Get(p + "embeddings.patch_embedding.bias", hidden));
        }

        if (c.PreNorm)
        {
            _preNorm = backend.LoadWeight(weights.Get(p + "pre_layrnorm.weight", hidden));
            _preNormBias = backend.LoadWeight(weights.Get(p + "pre_layrnorm.bias", hidden));
        }

        _layers = [.. Enumerable.Range(0, config.LayersRun).Select(i => new ClipLayer(i, $"{p}encoder.layers.{i}.", c, weights, backend))];
        int textIn = config.ProjectorInputSize;
        _linear1 = backend.LoadWeight(weights.Get(j + "linear_1.weight", textHidden, textIn));
        _linear2 = backend.LoadWeight(weights.Get(j + "linear_2.weight", textHidden, textHidden));
        _linear1Bias = config.ProjectorBias ? backend.LoadWeight(weights.Get(j + "linear_1.bias", textHidden)) : null;
        _linear2Bias = config.ProjectorBias ? backend.LoadWeight(weights.Get(j + "linear_2.bias", textHidden)) : null;

        _attention = new AttentionSpec(c.NumAttentionHeads, c.NumAttentionHeads, c.HeadDim, 1f / MathF.Sqrt(c.HeadDim), 0) { Causal = false };
        RopeTable table = RotaryEmbedding.Compute(new RopeParameters(), c.HeadDim, _sequence, _sequence);
        _noRope = new RopeSpec(table.InverseFrequencies, 0, 1f, _sequence);
        // Block 0 is the null block; image i owns the blocks after it, numbered as ForwardBatch.ForSequences numbers them.
        backend.AllocateKvCache(config.LayersRun, 1 + maxImagesPerPass * _blocksPerImage, BlockSize, _attention);

        int rows = maxImagesPerPass * _sequence;
        DType t = backend.ActivationDType;
        _patchRows = new float[rows * patchValues];
        _patches = backend.Allocate("vision_patches", t, rows, patchValues);
        _residual = backend.Allocate("vision_residual", t, rows, hidden);
        _normed = backend.Allocate("vision_normed", t, rows, hidden);
        _hidden = backend.Allocate("vision_hidden", t, rows, hidden);
        _qkv = backend.Allocate("vision_qkv", t, rows, 3 * hidden);
        _q = backend.Allocate("vision_q", t, rows, hidden);
        _attentionOutput = backend.Allocate("vision_attn_out", t, rows, hidden);
        _intermediate = backend.Allocate("vision_intermediate", t, rows, c.IntermediateSize);
        _selected = backend.Allocate("vision_selected", t, rows, textIn);
        _compact = backend.Allocate("vision_features_in", t, maxImagesPerPass * FeaturesPerImage, textIn);
        _projected = backend.Allocate("vision_projected", t, maxImagesPerPass * FeaturesPerImage, textHidden);
        Features = backend.Allocate("image_features", t, maxImagesPerPass * FeaturesPerImage, textHidden);
    }

    public int FeaturesPerImage => _config.FeaturesPerImage;

    public int PixelValueCount => _tower.NumChannels * _tower.ImageSize * _tower.ImageSize;

    public int MaxImagesPerPass { get; }

    public Tensor Features { get; }

    public void Encode(IReadOnlyList<float[]> pixelValues)
    {
        int images = pixelValues.Count;
        if (images < 1 || images > MaxImagesPerPass)
        {
            throw new ArgumentException($"An image pass takes 1..{MaxImagesPerPass} images, not {images}.", nameof(pixelValues));
        }

        IModelBackend b = _backend;
        int rows = images * _sequence;
        float eps = (float)_tower.LayerNormEps;
        CutPatches(pixelValues);
        b.CopyFromHost(_patchRows.AsSpan(0, rows * (int)_patches.Columns), _patches);
        b.Linear(_patches, rows, _patchWeight, _patchBias, _hidden);
        for (int i = 0; i < images; i++)
        {
            b.CopyRows(_positions, 0, _residual, i * _sequence, _sequence);
        }

        // CLIP: each image's first row multiplied a zero patch: it becomes class + position 0, where CLIP puts the class token.
        b.Add(_hidden, rows, _residual);
        if (_preNorm is not null)
        {
            b.LayerNorm(_residual, rows, _preNorm, _preNormBias!, eps, _residual);
        }

        b.BeginStep(ForwardBatch.ForSequences([.. Enumerable.Repeat((0, _sequence), images)], _blocksPerImage, BlockSize));
        for (int run = 0; run <= _layers.Length; run++)
        {
            // hidden_states[run]: the input of layer `run`, or the last layer's output.
            for (int f = 0; f < _config.FeatureLayers.Count; f++)
            {
                if (_config.FeatureLayers[f] == run)
                {
                    b.CopyColumns(_residual, rows, _selected, f * _tower.HiddenSize);
                }
            }

            if (run < _layers.Length)
            {
                _layers[run].Forward(b, rows, this, eps);
            }
        }

        int features = images * FeaturesPerImage;
        Tensor projectorInput = _selected;
        if (_config.DropClassToken)
        {
            for (int i = 0; i < images; i++)
            {
                b.CopyRows(_selected, i * _sequence + 1, _compact, i * FeaturesPerImage, FeaturesPerImage);
            }

            projectorInput = _compact;
        }

        b.Linear(projectorInput, features, _linear1, _linear1Bias, _projected);
        b.Gelu(_projected, features, _config.ProjectorActivation);
        b.Linear(_projected, features, _linear2, _linear2Bias, Features);
    }

    public void Dispose() => (_backend as IDisposable)?.Dispose();

    /// <summary>
    /// The rows the patch matmul reads: per image a zero row where a class token goes, then the patches left to right,
    /// top to bottom, each as channels × kernel rows × kernel columns (the convolution weight's order).
    /// </summary>
    private void CutPatches(IReadOnlyList<float[]> pixelValues)
    {
        int size = _tower.ImageSize, patch = _tower.PatchSize, channels = _tower.NumChannels, grid = size / patch;
        int width = channels * patch * patch, first = _tower.ClassToken ? 1 : 0;
        for (int i = 0; i < pixelValues.Count; i++)
        {
            float[] image = pixelValues[i];
            if (image.Length != PixelValueCount)
            {
                throw new ArgumentException($"Image {i} has {image.Length} pixel values; this tower takes {channels} × {size} × {size}.", nameof(pixelValues));
            }

            Span<float> rows = _patchRows.AsSpan(i * _sequence * width, _sequence * width);
            rows[..(first * width)].Clear();
            for (int py = 0; py < grid; py++)
            {
                for (int px = 0; px < grid; px++)
                {
                    Span<float> row = rows.Slice((first + py * grid + px) * width, width);
                    for (int ch = 0; ch < channels; ch++)
                    {
                        for (int ky = 0; ky < patch; ky++)
                        {
                            image.AsSpan(ch * size * size + (py * patch + ky) * size + px * patch, patch)
                                .CopyTo(row.Slice((ch * patch + ky) * patch, patch));
                        }
                    }
                }
            }
        }
    }

    /// <summary>
    /// The position table, CLIP's with the class embedding added to its first row (CLIP adds both to the class token; the
    /// sum is rounded once to the activation dtype as torch rounds it), so one add after the patch matmul builds the embeddings.
    /// </summary>
    private static Tensor PositionTable(IModelBackend backend, IWeightSource weights, string p, VisionTowerConfig c)
    {
        int sequence = c.Sequence;
        float[] table = weights.Get(p + "embeddings.position_embedding.weight", sequence, c.HiddenSize).ToFloats("position embeddings");
        if (c.ClassToken)
        {
            float[] classEmbedding = weights.Get(p + "embeddings.class_embedding", c.HiddenSize).ToFloats("class embedding");
            for (int i = 0; i < c.HiddenSize; i++)
            {
                table[i] += classEmbedding[i];
            }
        }

        Tensor positions = backend.Allocate("vision_positions", backend.ActivationDType, sequence, c.HiddenSize);
        backend.CopyFromHost(table, positions);
        return positions;
    }

    /// <summary>One CLIPEncoderLayer: x += out(attention(LN1(x))), then x += fc2(act(fc1(LN2(x)))).</summary>
    private sealed class ClipLayer
    {
        private readonly int _index;
        private readonly Tensor _norm1, _norm1Bias, _qkv, _qkvBias, _out, _outBias, _norm2, _norm2Bias, _fc1, _fc1Bias, _fc2, _fc2Bias;
        private readonly GeluForm _activation;

        public ClipLayer(int index, string p, VisionTowerConfig c, IWeightSource w, IModelBackend b)
        {
            int hidden = c.HiddenSize, intermediate = c.IntermediateSize;
            WeightTensor Get(string name, params int[] shape) => w.Get(p + name, shape);
            _index = index;
            _activation = c.HiddenAct;
            _norm1 = b.LoadWeight(Get("layer_norm1.weight", hidden));
            _norm1Bias = b.LoadWeight(Get("layer_norm1.bias", hidden));
            _qkv = b.LoadStacked(p + "self_attn.qkv.weight",
                Get("self_attn.q_proj.weight", hidden, hidden), Get("self_attn.k_proj.weight", hidden, hidden), Get("self_attn.v_proj.weight", hidden, hidden));
            _qkvBias = b.LoadStacked(p + "self_attn.qkv.bias",
                Get("self_attn.q_proj.bias", hidden), Get("self_attn.k_proj.bias", hidden), Get("self_attn.v_proj.bias", hidden));
            _out = b.LoadWeight(Get("self_attn.out_proj.weight", hidden, hidden));
            _outBias = b.LoadWeight(Get("self_attn.out_proj.bias", hidden));
            _norm2 = b.LoadWeight(Get("layer_norm2.weight", hidden));
            _norm2Bias = b.LoadWeight(Get("layer_norm2.bias", hidden));
            _fc1 = b.LoadWeight(Get("mlp.fc1.weight", intermediate, hidden));
            _fc1Bias = b.LoadWeight(Get("mlp.fc1.bias", intermediate));
            _fc2 = b.LoadWeight(Get("mlp.fc2.weight", hidden, intermediate));
            _fc2Bias = b.LoadWeight(Get("mlp.fc2.bias", hidden));
        }

        public void Forward(IModelBackend b, int rows, LlavaImageEncoder m, float eps)
        {
            b.LayerNorm(m._residual, rows, _norm1, _norm1Bias, eps, m._normed);
            b.Linear(m._normed, rows, _qkv, _qkvBias, m._qkv);
            b.PrepareAttention(_index, m._qkv, rows, m._attention, m._noRope, null, null, eps, m._q);
            b.Attention(_index, m._q, m._attentionOutput, m._attention);
            b.Linear(m._attentionOutput, rows, _out, _outBias, m._hidden);
            b.Add(m._hidden, rows, m._residual);
            b.LayerNorm(m._residual, rows, _norm2, _norm2Bias, eps, m._normed);
            b.Linear(m._normed, rows, _fc1, _fc1Bias, m._intermediate);
            b.Gelu(m._intermediate, rows, _activation);
            b.Linear(m._intermediate, rows, _fc2, _fc2Bias, m._hidden);
            b.Add(m._hidden, rows, m._residual);
        }
    }
}
