using System.Text.Json.Nodes;
using Celer.Models.Config;
using Celer.Models.Multimodal;
using Celer.Models.Tests.Weights;
using Xunit;

namespace Celer.Models.Tests.Multimodal;

public class ClipImageProcessorTests
{
    // Far below one 8-bit level after normalization (1/255/std ≥ 0.0078 here), for comparisons with the torchvision
    // backend, which folds the rescale into the mean and std (float32 rounding differences of a few 1e-7). Against the
    // PIL backend the values are compared bit for bit: that also checks the dtypes of rescale (float64, then float32)
    // and normalize (float32), which differ from other orders by an ulp.
    private const double ExactTolerance = 1e-6;

    public static TheoryData<string> ReferenceCases() => new(ClipProcessorReference.Cases.Select(c => c.Id));

    /// <summary>The cases where transformers' torchvision backend is within one 8-bit level of its PIL backend: all but the padded crops.</summary>
    public static TheoryData<string> TorchvisionCases() =>
        new(ClipProcessorReference.Cases.Where(c => c.FastVsSlowMaxAbs <= OneLevel(c.Config)).Select(c => c.Id));

    /// <summary>The padded crops, where the torchvision backend puts an odd margin's extra row or column on the other side.</summary>
    public static TheoryData<string> TorchvisionPaddingCases() =>
        new(ClipProcessorReference.Cases.Where(c => c.FastVsSlowMaxAbs > OneLevel(c.Config)).Select(c => c.Id));

    [Theory]
    [MemberData(nameof(ReferenceCases))]
    public void Matches_the_transformers_PIL_backend(string id)
    {
        var reference = ClipProcessorReference.Case(id);

        var processed = Processor(reference.Config).Preprocess(reference.Image);

        Assert.Equal(reference.Shape, new[] { 3, processed.Height, processed.Width });
        Assert.Equal(0, MaxAbsDiff(processed.PixelValues, reference.Slow));
    }

    [Theory]
    [MemberData(nameof(TorchvisionCases))]
    public void Is_within_one_level_of_the_torchvision_backend(string id)
    {
        var reference = ClipProcessorReference.Case(id);

        var processed = Processor(reference.Config).Preprocess(reference.Image);

        // torchvision's uint8 resize rounds its own way: at most one level apart, i.e. 1/255/std after normalize.
        Assert.InRange(MaxAbsDiff(processed.PixelValues, reference.Fast), 0, OneLevel(reference.Config));
    }

    [Theory]
    [MemberData(nameof(TorchvisionPaddingCases))]
    public void Pads_an_odd_margin_as_numpy_does_not_as_torchvision_does(string id)
    {
        // numpy's center_crop puts ceil(margin / 2) of zeros before the image, torchvision's floor(margin / 2): where a
        // margin is odd, this output is torchvision's shifted by one pixel along that axis.
        var reference = ClipProcessorReference.Case(id);
        var processed = Processor(reference.Config).Preprocess(reference.Image);
        int height = processed.Height, width = processed.Width;
        int dy = Math.Max(height - reference.Image.Height, 0) % 2, dx = Math.Max(width - reference.Image.Width, 0) % 2;
        Assert.True(dy + dx > 0);

        double shifted = 0;
        for (int c = 0; c < 3; c++)
        {
            for (int y = dy; y < height; y++)
            {
                for (int x = dx; x < width; x++)
                {
                    int at = (c * height + y) * width + x, torchvisionAt = (c * height + y - dy) * width + x - dx;
                    shifted = Math.Max(shifted, Math.Abs(processed.PixelValues[at] - reference.Fast[torchvisionAt]));
                }
            }
        }

        Assert.InRange(shifted, 0, ExactTolerance);
        Assert.True(MaxAbsDiff(processed.PixelValues, reference.Fast) > 1, "unshifted, the padding misplaces whole rows or columns");
    }

    [Fact]
    public void Matches_the_llava_fixture_under_its_own_preprocessor_config()
    {
        var processor = ClipImageProcessor.Load(ClipProcessorReference.LlavaDirectory);
        var images = ClipProcessorReference.LlavaImages();
        Assert.Equal(2, images.Count);

        foreach (var (image, shape, expected) in images)
        {
            var processed = processor.Preprocess(image);
            Assert.Equal(shape, new[] { 3, processed.Height, processed.Width });
            Assert.Equal(0, MaxAbsDiff(processed.PixelValues, expected));
        }
    }

    [Theory]
    [InlineData("llava-shortest-edge-crop", 2)]
    [InlineData("llava-shortest-edge-crop", 0)]
    [InlineData("fixed-size-bilinear-no-crop", 3)]
    public void A_different_filter_fails_the_reference_comparison(string config, int wrongResample)
    {
        // The comparison above can fail: bilinear or nearest where the config says bicubic (or bicubic for bilinear)
        // misses the reference by many levels on the resized cases.
        var json = JsonNode.Parse(ClipProcessorReference.Configs[config])!;
        json["resample"] = wrongResample;
        var wrong = ClipImageProcessor.Parse(json.ToJsonString());
        Assert.Equal((PilResample)wrongResample, wrong.Resample);

        double worst = ClipProcessorReference.Cases.Where(c => c.Config == config)
            .Max(c => MaxAbsDiff(wrong.Preprocess(c.Image).PixelValues, c.Slow));

        Assert.True(worst > 10 * OneLevel(config), $"max |diff| {worst}");
    }

    [Fact]
    public void An_empty_config_takes_CLIPImageProcessor_defaults()
    {
        var p = ClipImageProcessor.Parse("{}");

        Assert.True(p.DoResize);
        Assert.Equal(224, p.ShortestEdge);
        Assert.Null(p.ResizeSize);
        Assert.Equal(PilResample.Bicubic, p.Resample);
        Assert.True(p.DoCenterCrop);
        Assert.Equal(new ImageSize(224, 224), p.CropSize);
        Assert.True(p.DoRescale);
        Assert.Equal(1.0 / 255, p.RescaleFactor);
        Assert.True(p.DoNormalize);
        Assert.Equal([0.48145466, 0.4578275, 0.40821073], p.ImageMean);
        Assert.Equal([0.26862954, 0.26130258, 0.27577711], p.ImageStd);
        Assert.True(p.DoConvertRgb);
        Assert.Equal(new ImageSize(224, 224), p.OutputSize(640, 480));
    }

    [Fact]
    public void Nulls_are_absent_and_unknown_fields_are_ignored()
    {
        var p = ClipImageProcessor.Parse("""
            {"size": null, "resample": null, "image_mean": null, "processor_class": "LlavaProcessor", "crop_pct": 0.9}
            """);

        Assert.Equal(224, p.ShortestEdge);
        Assert.Equal(PilResample.Bicubic, p.Resample);
        Assert.Equal(0.48145466, p.ImageMean[0]);
    }

    [Fact]
    public void The_openai_clip_config_of_before_image_processors_reads_as_CLIPImageProcessor()
    {
        // openai/clip-vit-large-patch14-336 as published: int sizes, a feature extractor type, no processor type.
        var p = ClipImageProcessor.Parse("""
            {"crop_size": 336, "do_center_crop": true, "do_normalize": true, "do_resize": true,
             "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073],
             "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 336}
            """);

        Assert.Equal(336, p.ShortestEdge);
        Assert.Equal(new ImageSize(336, 336), p.CropSize);
    }

    [Theory]
    [InlineData(4000, 3000, 336, 336, 448)]   // landscape: the long side is int(336 · 4000 / 3000)
    [InlineData(37, 53, 56, 80, 56)]          // portrait: int(56 · 53 / 37) = int(80.22)
    [InlineData(3, 2, 5, 5, 7)]               // int(5 · 3 / 2) = int(7.5): truncated, not rounded
    [InlineData(200, 200, 56, 56, 56)]        // square
    [InlineData(1, 40, 56, 2240, 56)]         // a 1-pixel strip keeps its aspect ratio
    [InlineData(100, 300, 300, 900, 300)]     // upscale
    public void Shortest_edge_resize_truncates_the_long_side(int width, int height, int edge, int expectedHeight, int expectedWidth)
    {
        var p = ClipImageProcessor.Parse($$"""{"size": {"shortest_edge": {{edge}}}, "do_center_crop": false}""");

        Assert.Equal(new ImageSize(expectedHeight, expectedWidth), p.ResizedSize(width, height));
        Assert.Equal(new ImageSize(expectedHeight, expectedWidth), p.OutputSize(width, height));
    }

    [Theory]
    [InlineData("""{"size": 336}""", 336, null, null)]
    [InlineData("""{"size": 336, "default_to_square": true}""", null, 336, 336)]
    [InlineData("""{"size": [48, 64]}""", null, 48, 64)]
    [InlineData("""{"size": {"height": 48, "width": 64}}""", null, 48, 64)]
    [InlineData("""{"size": {"shortest_edge": 336.0}}""", 336, null, null)]
    [InlineData("""{"size": {"shortest_edge": 224}, "use_square_size": true}""", null, 224, 224)]
    public void Size_forms(string json, int? shortestEdge, int? height, int? width)
    {
        var p = ClipImageProcessor.Parse(json);

        Assert.Equal(shortestEdge, p.ShortestEdge);
        Assert.Equal(height is null ? null : new ImageSize(height.Value, width!.Value), p.ResizeSize);
    }

    [Theory]
    [InlineData("""{"crop_size": 100}""", 100, 100)]
    [InlineData("""{"crop_size": [30, 40]}""", 30, 40)]
    [InlineData("""{"crop_size": {"height": 30, "width": 40}}""", 30, 40)]
    public void Crop_size_forms(string json, int height, int width)
    {
        Assert.Equal(new ImageSize(height, width), ClipImageProcessor.Parse(json).CropSize);
    }

    [Fact]
    public void Each_step_can_be_turned_off()
    {
        // A 4 × 2 image, all levels distinct, through each switch alone, with a config that would otherwise resize to
        // 2 × 1 and crop to 1 × 1.
        byte[] pixels = Enumerable.Range(0, 24).Select(i => (byte)(i * 10)).ToArray();
        var image = new RgbImage(4, 2, pixels);
        const string Base = """
            "size": {"height": 1, "width": 2}, "resample": 0, "crop_size": {"height": 1, "width": 1},
            "rescale_factor": 0.5, "image_mean": [1, 2, 3], "image_std": [2, 4, 8]
            """;

        // Everything on. Nearest 4×2 → 2×1 reads input column (int)(1 + 2x) and row 1: columns 1 and 3, so the
        // 1 × 1 crop (left (2 - 1) // 2 = 0) keeps input pixel (1, 1) = bytes 15..17 = levels 150, 160, 170.
        var all = ClipImageProcessor.Parse($$"""{{{Base}}}""").Preprocess(image);
        Assert.Equal([(150 * 0.5f - 1) / 2, (160 * 0.5f - 2) / 4, (170 * 0.5f - 3) / 8], all.PixelValues);

        var noResize = ClipImageProcessor.Parse($$"""{{{Base}}, "do_resize": false}""").Preprocess(image);
        // Crop 1 × 1 of 4 × 2: top (2 - 1) // 2 = 0, left (4 - 1) // 2 = 1: pixel (1, 0) = levels 30, 40, 50.
        Assert.Equal([(30 * 0.5f - 1) / 2, (40 * 0.5f - 2) / 4, (50 * 0.5f - 3) / 8], noResize.PixelValues);

        var noCrop = ClipImageProcessor.Parse($$"""{{{Base}}, "do_center_crop": false}""").Preprocess(image);
        Assert.Equal((1, 2), (noCrop.Height, noCrop.Width));
        Assert.Equal((150 * 0.5f - 1) / 2, noCrop.PixelValues[0]);
        Assert.Equal((210 * 0.5f - 1) / 2, noCrop.PixelValues[1]);

        var noRescale = ClipImageProcessor.Parse($$"""{{{Base}}, "do_rescale": false}""").Preprocess(image);
        Assert.Equal([(150f - 1) / 2, (160f - 2) / 4, (170f - 3) / 8], noRescale.PixelValues);

        var noNormalize = ClipImageProcessor.Parse($$"""{{{Base}}, "do_normalize": false}""").Preprocess(image);
        Assert.Equal([75f, 80f, 85f], noNormalize.PixelValues);

        var nothing = ClipImageProcessor.Parse("""
            {"do_resize": false, "do_center_crop": false, "do_rescale": false, "do_normalize": false, "do_convert_rgb": false}
            """);
        Assert.False(nothing.DoConvertRgb);
        var raw = nothing.Preprocess(image);
        Assert.Equal((2, 4), (raw.Height, raw.Width));
        Assert.Equal([0f, 30f, 60f, 90f, 120f, 150f, 180f, 210f], raw.PixelValues[..8]);
    }

    [Fact]
    public void Rescale_multiplies_in_double_and_normalize_works_in_float()
    {
        // transformers: (float32)(level · factor in float64), then (x - (float32)mean) / (float32)std in float32.
        var p = ClipImageProcessor.Parse("""
            {"do_resize": false, "do_center_crop": false, "image_mean": 0.48145466, "image_std": 0.26862954}
            """);
        var image = new RgbImage(1, 1, [1, 254, 77]);

        var values = p.Preprocess(image).PixelValues;

        float Expected(int level) => ((float)(level * (1.0 / 255)) - (float)0.48145466) / (float)0.26862954;
        Assert.Equal([Expected(1), Expected(254), Expected(77)], values);
    }

    [Fact]
    public void A_crop_larger_than_the_image_pads_with_normalized_zeros_ceil_half_before()
    {
        // 1 × 1 image, crop 4 × 3: margins 3 rows and 2 columns; numpy puts ceil(3/2) = 2 rows above and 1 column left.
        var p = ClipImageProcessor.Parse("""
            {"do_resize": false, "crop_size": {"height": 4, "width": 3}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}
            """);

        var r = p.Preprocess(new RgbImage(1, 1, [255, 255, 255])).PixelValues.AsSpan(0, 12).ToArray();

        Assert.Equal([-1f, -1f, -1f, -1f, -1f, -1f, -1f, 1f, -1f, -1f, -1f, -1f], r);
    }

    [Fact]
    public void Load_reads_the_model_directory()
    {
        using var dir = new TempDirectory();
        Assert.Contains("not found", Assert.Throws<ModelConfigException>(() => ClipImageProcessor.Load(dir.Path)).Message);

        File.WriteAllText(dir.File(ClipImageProcessor.FileName), """{"image_processor_type": "CLIPImageProcessorFast", "resample": 2}""");
        Assert.Equal(PilResample.Bilinear, ClipImageProcessor.Load(dir.Path).Resample);
    }

    [Theory]
    [InlineData("""{"image_processor_type": "Qwen2VLImageProcessor"}""", "'image_processor_type' is 'Qwen2VLImageProcessor'")]
    [InlineData("""{"image_processor_type": "SiglipImageProcessor", "size": {"shortest_edge": 384}}""", "SiglipImageProcessor resizes to")]
    [InlineData("""{"feature_extractor_type": "ViTFeatureExtractor"}""", "'feature_extractor_type' is 'ViTFeatureExtractor'")]
    [InlineData("""{"size": {"shortest_edge": -5}}""", "'size.shortest_edge' must be a positive whole number")]
    [InlineData("""{"size": 0}""", "'size' must be a positive whole number")]
    [InlineData("""{"size": {"shortest_edge": 224, "longest_edge": 448}}""", "'size' has keys {longest_edge, shortest_edge}")]
    [InlineData("""{"size": {"height": 224}}""", "'size' has keys {height}")]
    [InlineData("""{"size": [224]}""", "must be [height, width]")]
    [InlineData("""{"size": "224"}""", "field 'size' must be")]
    [InlineData("""{"crop_size": {"height": 30, "width": 2.5}}""", "'crop_size.width' must be a positive whole number")]
    [InlineData("""{"crop_size": {"shortest_edge": 30}}""", "field 'crop_size' must be")]
    [InlineData("""{"resample": 6}""", "'resample' must be a PIL filter number")]
    [InlineData("""{"resample": "bicubic"}""", "'resample' must be an integer")]
    [InlineData("""{"rescale_factor": 0}""", "'rescale_factor' must be positive")]
    [InlineData("""{"image_std": [0.5, 0, 0.5]}""", "'image_std' must be positive for every channel")]
    [InlineData("""{"image_std": 0}""", "'image_std' must be positive for every channel")]
    [InlineData("""{"image_mean": [0.5, 0.5]}""", "'image_mean' must be a number or a list of 3")]
    [InlineData("""{"image_mean": [0.5, "x", 0.5]}""", "'image_mean' must hold finite numbers")]
    [InlineData("""{"do_resize": "yes"}""", "'do_resize' must be true or false")]
    [InlineData("""{"do_pad": true}""", "'do_pad' is true")]
    [InlineData("""{"size": {"shortest_edge": 336}, "use_square_size": true}""", "'use_square_size' with a size other than")]
    [InlineData("""{"size": {"height": 224, "width": 224}, "use_square_size": true}""", "'use_square_size' with a size other than")]
    [InlineData("""[1, 2]""", "must hold a JSON object")]
    [InlineData("""{"size": """, "not valid JSON")]
    public void Bad_configs_are_refused_with_the_field_named(string json, string expected)
    {
        var e = Assert.Throws<ModelConfigException>(() => ClipImageProcessor.Parse(json));

        Assert.Contains("preprocessor_config.json", e.Message);
        Assert.Contains(expected, e.Message);
    }

    private static ClipImageProcessor Processor(string config) => ClipImageProcessor.Parse(ClipProcessorReference.Configs[config]);

    private static double OneLevel(string config) => 1.0 / 255 / Processor(config).ImageStd.Min() + ExactTolerance;

    private static double MaxAbsDiff(float[] actual, float[] expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double max = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            max = Math.Max(max, Math.Abs(actual[i] - expected[i]));
        }

        return max;
    }
}
