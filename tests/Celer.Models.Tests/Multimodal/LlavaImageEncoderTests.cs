using System.Text.Json.Nodes;
using Celer.Backends.Cpu;
using Celer.Models.Backend;
using Celer.Models.Config;
using Celer.Models.Multimodal;
using Celer.Models.Weights;
using Celer.TestSupport;
using Xunit;

namespace Celer.Models.Tests.Multimodal;

/// <summary>
/// The CLIP and SigLIP towers and projectors of the tiny LLaVA fixtures on the CPU against transformers'
/// <c>get_image_features</c> (fp32, the same bf16 weights, transformers' own pixel values as input), and their image
/// processors against transformers' pixel values.
/// </summary>
public sealed class LlavaImageEncoderTests
{
    private static readonly string Model = Path.Combine(RepoPaths.Fixtures, "multimodal", "llava-clip-bf16");
    private static readonly string SiglipModel = Path.Combine(RepoPaths.Fixtures, "multimodal", "llava-siglip-bf16");

    // fp32 through 2 tower layers and the projector with summation orders of our own: 1.6e-5 measured.
    private const float Tolerance = 1e-4f;

    [Theory]
    [InlineData("llava-clip-bf16")]
    [InlineData("llava-siglip-bf16")]   // all 3 layers, the "full" strategy: every patch's row
    public void Features_match_transformers_image_by_image_and_batched(string fixture)
    {
        string model = Path.Combine(RepoPaths.Fixtures, "multimodal", fixture);
        MultimodalReference reference = MultimodalReference.Load(model);
        ModelConfig config = ModelConfig.Load(model);
        VisionLanguageConfig vision = config.Vision!;
        Assert.Equal(reference.FeaturesPerImage, vision.FeaturesPerImage);
        using var weights = SafetensorsWeightSource.Open(model);
#pragma warning disable CA2000 // the encoder owns its backend
        using var encoder = new LlavaImageEncoder(vision, config.HiddenSize, weights, new CpuBackend(DType.BF16), maxImagesPerPass: 3);
#pragma warning restore CA2000

        foreach (ReferenceImage image in reference.Images)
        {
            encoder.Encode([image.PixelValues]);
            AssertClose(image.Features, Read(encoder, 1), "one image");
        }

        // Three images in one pass, one of them twice: each its own sequence of the tower's attention.
        encoder.Encode([reference.Images[1].PixelValues, reference.Images[0].PixelValues, reference.Images[1].PixelValues]);
        float[] batched = Read(encoder, 3);
        int size = reference.Images[0].Features.Length;
        AssertClose(reference.Images[1].Features, batched[..size], "first of three");
        AssertClose(reference.Images[0].Features, batched[size..(2 * size)], "second of three");
        AssertClose(reference.Images[1].Features, batched[(2 * size)..], "third of three");
    }

    [Fact]
    public void The_config_reads_llava_and_its_language_model()
    {
        ModelConfig config = ModelConfig.Load(Model);
        Assert.Equal("LlamaForCausalLM", config.Architecture);
        Assert.Equal(64, config.HiddenSize);
        Assert.Equal(2, config.NumKeyValueHeads);
        Assert.Equal(DType.BF16, config.TorchDtype);
        VisionLanguageConfig vision = config.Vision!;
        Assert.Equal(511, vision.ImageTokenId);
        Assert.Equal([2], vision.FeatureLayers);   // -2 of 3 layers: hidden_states[2], after two layers
        Assert.True(vision.DropClassToken);
        Assert.Equal(16, vision.FeaturesPerImage);
        Assert.Equal(GeluForm.Quick, vision.Vision.HiddenAct);
        Assert.Equal(GeluForm.Erf, vision.ProjectorActivation);
    }

    [Fact]
    public void The_siglip_config_reads_its_tower_and_qwen2()
    {
        ModelConfig config = ModelConfig.Load(SiglipModel);
        Assert.Equal("Qwen2ForCausalLM", config.Architecture);
        VisionLanguageConfig vision = config.Vision!;
        Assert.Equal(VisionTower.Siglip, vision.Vision.Tower);
        Assert.Equal([3], vision.FeatureLayers);   // -1 of 3 layers: the last layer's output (before post_layernorm)
        Assert.False(vision.DropClassToken);
        Assert.Equal(16, vision.FeaturesPerImage);   // 4 x 4 patches, no class token
        Assert.Equal(GeluForm.Tanh, vision.Vision.HiddenAct);
        // SiglipVisionConfig's defaults differ from CLIP's where the file is silent.
        VisionTowerConfig sparse = Edited(c => c["vision_config"] = JsonNode.Parse("""{"model_type": "siglip_vision_model"}""")).Vision!.Vision;
        Assert.Equal((16, 1e-6, GeluForm.Tanh, 196), (sparse.PatchSize, sparse.LayerNormEps, sparse.HiddenAct, sparse.Sequence));
        Assert.Equal(195, Edited(c =>
        {
            c["vision_config"] = JsonNode.Parse("""{"model_type": "siglip_vision_model"}""");
            c["vision_feature_select_strategy"] = "default";   // transformers drops the first patch: there is no class token
        }).Vision!.FeaturesPerImage);
    }

    [Fact]
    public void The_siglip_processor_gives_transformers_pixel_values_bit_for_bit()
    {
        MultimodalReference reference = MultimodalReference.Load(SiglipModel);
        ClipImageProcessor processor = ClipImageProcessor.Load(SiglipModel);
        Assert.False(processor.DoCenterCrop);
        foreach (ReferenceImage image in reference.Images)
        {
            Assert.Equal(image.PixelValues, processor.Preprocess(image.Image).PixelValues);
        }
    }

    [Fact]
    public void A_sparse_llava_config_takes_transformers_defaults()
    {
        // llava-hf/llava-1.5-7b-hf's config.json as published: text_config and vision_config hold only what differs.
        const string Json = """
            {"architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": 32000, "model_type": "llava",
             "pad_token_id": 32001, "projector_hidden_act": "gelu",
             "text_config": {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"], "max_position_embeddings": 4096,
                             "model_type": "llama", "rms_norm_eps": 1e-05, "torch_dtype": "float16", "vocab_size": 32064},
             "tie_word_embeddings": false, "torch_dtype": "float16", "transformers_version": "4.36.0.dev0", "vision_config": {
             "hidden_size": 1024, "image_size": 336, "intermediate_size": 4096, "model_type": "clip_vision_model", "num_attention_heads": 16,
             "num_hidden_layers": 24, "patch_size": 14, "projection_dim": 768, "vocab_size": 32000},
             "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": 32064}
            """;
        ModelConfig config = ModelConfig.Parse(Json);
        Assert.Equal((4096, 11008, 32, 32, 32, 32064, 4096), (config.HiddenSize, config.IntermediateSize, config.NumHiddenLayers,
            config.NumAttentionHeads, config.NumKeyValueHeads, config.VocabSize, config.MaxPositionEmbeddings));
        Assert.Equal(1e-5, config.RmsNormEps);
        VisionLanguageConfig vision = config.Vision!;
        Assert.Equal(576, vision.FeaturesPerImage);
        Assert.Equal(23, vision.LayersRun);
        Assert.Equal(GeluForm.Quick, vision.Vision.HiddenAct);   // CLIPVisionConfig's default
        Assert.Equal(1e-5, vision.Vision.LayerNormEps);
        Assert.Equal(1024, vision.ProjectorInputSize);
    }

    [Fact]
    public void Feature_layers_and_strategies_read_as_transformers_does()
    {
        // hidden_states[-1], [-4] (of 4: the embeddings) and [1], side by side in that order.
        VisionLanguageConfig layers = Edited(c => c["vision_feature_layer"] = new JsonArray(-1, -4, 1)).Vision!;
        Assert.Equal([3, 0, 1], layers.FeatureLayers);
        Assert.Equal(3, layers.LayersRun);
        Assert.Equal(3 * 64, layers.ProjectorInputSize);
        VisionLanguageConfig full = Edited(c => c["vision_feature_select_strategy"] = "full").Vision!;
        Assert.Equal(17, full.FeaturesPerImage);   // the class token's row kept
        Assert.Equal(7, Edited(c => { c.Remove("image_token_index"); c["image_token_id"] = 7; }).Vision!.ImageTokenId);
    }

    [Theory]
    [InlineData("vision_feature_select_strategy", "\"pooled\"", "vision_feature_select_strategy")]
    [InlineData("vision_feature_layer", "-5", "vision_feature_layer -5")]
    [InlineData("vision_config.model_type", "\"dinov2\"", "dinov2")]
    [InlineData("vision_config.hidden_act", "\"relu\"", "vision_config.hidden_act")]
    [InlineData("vision_config.image_size", "57", "patch_size")]
    [InlineData("text_config.model_type", "\"falcon\"", "falcon")]
    public void Configs_it_cannot_run_are_refused_naming_the_field(string field, string value, string named)
    {
        var e = Assert.Throws<ModelConfigException>(() => Edited(c =>
        {
            string[] path = field.Split('.');
            JsonObject target = path.Length == 1 ? c : c[path[0]]!.AsObject();
            target[path[^1]] = JsonNode.Parse(value);
        }));
        Assert.Contains(named, e.Message, StringComparison.Ordinal);
    }

    private static ModelConfig Edited(Action<JsonObject> edit)
    {
        JsonObject config = JsonNode.Parse(File.ReadAllText(Path.Combine(Model, "config.json")))!.AsObject();
        edit(config);
        return ModelConfig.Parse(config.ToJsonString());
    }

    private static float[] Read(LlavaImageEncoder encoder, int images)
    {
        var values = new float[images * encoder.FeaturesPerImage * encoder.Features.Columns];
        using var host = new CpuBackend(DType.BF16);
        host.CopyToHost(encoder.Features, images * encoder.FeaturesPerImage, values);
        return values;
    }

    private static void AssertClose(float[] expected, float[] actual, string what)
    {
        double worst = MultimodalReference.WorstFeatureError(expected, actual);
        Assert.True(worst <= Tolerance, $"{what}: features differ by {worst:E2} (relative to max(1, |x|)), above {Tolerance:E1}");
    }
}
