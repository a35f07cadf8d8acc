using System.Text.Json;
using Celer.Models.Config;

namespace Celer.Models.Multimodal;

/// <summary>A height and a width in pixels, in the (height, width) order transformers writes sizes in.</summary>
public readonly record struct ImageSize(int Height, int Width);

/// <summary>An image as a vision encoder takes it: float32 <c>[3, Height, Width]</c>, channel by channel (CHW).</summary>
public sealed record ProcessedImage(float[] PixelValues, int Height, int Width);

/// <summary>
/// transformers' <c>CLIPImageProcessor</c> (the image preprocessing of CLIP and LLaVA-1.5), configured by a model
/// directory's preprocessor_config.json, computing what transformers 5.17's PIL backend computes: resize in 8 bits
/// with Pillow's filters (<see cref="ImageResampler"/>), center crop (zero-padded where the crop is larger than the
/// image), then rescale and normalize. The torchvision backend, which transformers picks by default, rounds its resize
/// differently by up to one 8-bit level and pads an odd margin on the other side; this class follows PIL.
/// <c>SiglipImageProcessor</c> (SigLIP towers: LLaVA-Interleave, PaliGemma) is the same without the crop, resizing to a
/// height and width, with 0.5 for its default means and deviations.
/// </summary>
public sealed class ClipImageProcessor
{
    public const string FileName = "preprocessor_config.json";

    private const string F = FileName;

    private static readonly string[] ProcessorTypes = ["CLIPImageProcessor", "CLIPImageProcessorFast", "CLIPImageProcessorPil"];
    private static readonly string[] SiglipProcessorTypes = ["SiglipImageProcessor", "SiglipImageProcessorFast", "SiglipImageProcessorPil"];

    // transformers' OPENAI_CLIP_MEAN and OPENAI_CLIP_STD, CLIPImageProcessor's defaults.
    private static readonly double[] OpenAiClipMean = [0.48145466, 0.4578275, 0.40821073];
    private static readonly double[] OpenAiClipStd = [0.26862954, 0.26130258, 0.27577711];

    // transformers' IMAGENET_STANDARD_MEAN and IMAGENET_STANDARD_STD, SiglipImageProcessor's defaults.
    private static readonly double[] StandardHalf = [0.5, 0.5, 0.5];

    // CLIPImageProcessor's default size and crop size (ViT-B/32's 224).
    private const int DefaultSize = 224;

    // Each channel's output value for each 8-bit level (3 × 256): every output pixel is one of these, since resize and
    // crop leave 8-bit values and rescale and normalize act on each value alone.
    private readonly float[] _levels;

    private ClipImageProcessor(
        bool doResize, int? shortestEdge, ImageSize? resizeSize, PilResample resample, bool doCenterCrop, ImageSize cropSize,
        bool doRescale, double rescaleFactor, bool doNormalize, double[] imageMean, double[] imageStd, bool doConvertRgb)
    {
        DoResize = doResize;
        ShortestEdge = shortestEdge;
        ResizeSize = resizeSize;
        Resample = resample;
        DoCenterCrop = doCenterCrop;
        CropSize = cropSize;
        DoRescale = doRescale;
        RescaleFactor = rescaleFactor;
        DoNormalize = doNormalize;
        ImageMean = imageMean;
        ImageStd = imageStd;
        DoConvertRgb = doConvertRgb;
        _levels = new float[3 * 256];
        for (int c = 0; c < 3; c++)
        {
            for (int level = 0; level < 256; level++)
            {
                // transformers' rescale multiplies in float64 and stores float32; normalize then works in the image's
                // float32, with the mean and std cast to float32 (a uint8 image is cast to float32 first).
                float value = doRescale ? (float)(level * rescaleFactor) : level;
                if (doNormalize)
                {
                    value = (value - (float)imageMean[c]) / (float)imageStd[c];
                }

                _levels[c * 256 + level] = value;
            }
        }
    }

    public bool DoResize { get; }

    /// <summary><c>size</c> as <c>{"shortest_edge": n}</c>: the shorter side becomes n and the longer keeps the aspect ratio; null when <see cref="ResizeSize"/> is set.</summary>
    public int? ShortestEdge { get; }

    /// <summary><c>size</c> as <c>{"height": h, "width": w}</c>: every image is resized to exactly this; null when <see cref="ShortestEdge"/> is set.</summary>
    public ImageSize? ResizeSize { get; }

    public PilResample Resample { get; }

    public bool DoCenterCrop { get; }

    public ImageSize CropSize { get; }

    public bool DoRescale { get; }

    public double RescaleFactor { get; }

    public bool DoNormalize { get; }

    /// <summary>Per channel (R, G, B); a single number in the file applies to all three.</summary>
    public IReadOnlyList<double> ImageMean { get; }

    /// <summary>Per channel (R, G, B); a single number in the file applies to all three.</summary>
    public IReadOnlyList<double> ImageStd { get; }

    /// <summary>Read and checked; an <see cref="RgbImage"/> is RGB already, so converting changes nothing.</summary>
    public bool DoConvertRgb { get; }

    /// <summary>Reads preprocessor_config.json from a model directory.</summary>
    public static ClipImageProcessor Load(string modelDirectory)
    {
        string path = Path.Combine(modelDirectory, FileName);
        if (!File.Exists(path))
        {
            throw new ModelConfigException($"{FileName} not found in {modelDirectory}; a vision model's image preprocessing is configured there");
        }

        return Parse(File.ReadAllText(path));
    }

    /// <summary>Reads a preprocessor_config.json; absent or null fields take CLIPImageProcessor's defaults.</summary>
    public static ClipImageProcessor Parse(string json)
    {
        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(json);
        }
        catch (JsonException e)
        {
            throw new ModelConfigException($"{F} is not valid JSON: {e.Message}", e);
        }

        using (doc)
        {
            var root = doc.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new ModelConfigException($"{F} must hold a JSON object");
            }

            bool siglip = IsSiglip(root);
            if (JsonFields.OptionalBool(root, "do_pad", F) == true)
            {
                throw new ModelConfigException($"{F}: 'do_pad' is true; Celer's ClipImageProcessor does not pad (CLIPImageProcessor leaves it off)");
            }

            // CLIPImageProcessor sets default_to_square to false: a bare integer size is the shortest edge.
            bool defaultToSquare = JsonFields.OptionalBool(root, "default_to_square", F) ?? false;
            // SiglipImageProcessor reads size["height"] and size["width"] (224 each by default) and has no crop: its
            // preprocess takes no do_center_crop, so one in the file changes nothing there either.
            var (shortestEdge, resizeSize) = ReadResizeSize(root, defaultToSquare, siglip ? (null, new ImageSize(DefaultSize, DefaultSize)) : (DefaultSize, null));
            if (siglip && resizeSize is null)
            {
                throw new ModelConfigException($"{F}: SiglipImageProcessor resizes to {{\"height\": h, \"width\": w}}; this 'size' names a shortest edge");
            }

            if (JsonFields.OptionalBool(root, "use_square_size", F) == true)
            {
                // Kosmos-2's flag. transformers 4.x squares the configured shortest edge, 5.x the class default 224
                // whatever the config says; they agree only on a shortest edge of 224.
                if (shortestEdge != DefaultSize)
                {
                    throw new ModelConfigException($"{F}: 'use_square_size' with a size other than {{\"shortest_edge\": {DefaultSize}}}: transformers 4 and 5 resize it differently; set 'size' to {{\"height\": h, \"width\": w}} instead");
                }

                (shortestEdge, resizeSize) = (null, new ImageSize(DefaultSize, DefaultSize));
            }

            int resample = JsonFields.OptionalInt(root, "resample", F) ?? (int)PilResample.Bicubic;
            if (!Enum.IsDefined((PilResample)resample))
            {
                throw new ModelConfigException($"{F}: field 'resample' must be a PIL filter number (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming), got {resample}");
            }

            double rescaleFactor = JsonFields.OptionalDouble(root, "rescale_factor", F) ?? 1.0 / 255;
            if (!(rescaleFactor > 0))
            {
                throw new ModelConfigException($"{F}: field 'rescale_factor' must be positive, got {rescaleFactor}");
            }

            double[] std = ReadChannels(root, "image_std", siglip ? StandardHalf : OpenAiClipStd);
            if (std.Any(s => !(s > 0)))
            {
                throw new ModelConfigException($"{F}: field 'image_std' must be positive for every channel, got [{string.Join(", ", std)}]");
            }

            return new ClipImageProcessor(
                doResize: JsonFields.OptionalBool(root, "do_resize", F) ?? true,
                shortestEdge,
                resizeSize,
                (PilResample)resample,
                doCenterCrop: !siglip && (JsonFields.OptionalBool(root, "do_center_crop", F) ?? true),
                ReadCropSize(root),
                doRescale: JsonFields.OptionalBool(root, "do_rescale", F) ?? true,
                rescaleFactor,
                doNormalize: JsonFields.OptionalBool(root, "do_normalize", F) ?? true,
                ReadChannels(root, "image_mean", siglip ? StandardHalf : OpenAiClipMean),
                std,
                doConvertRgb: JsonFields.OptionalBool(root, "do_convert_rgb", F) ?? true);
        }
    }

    /// <summary>The size of the image after resizing, before the crop: transformers' get_resize_output_image_size for a shortest edge.</summary>
    public ImageSize ResizedSize(int width, int height)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(width, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(height, 1);
        if (!DoResize)
        {
            return new ImageSize(height, width);
        }

        if (ResizeSize is { } fixedSize)
        {
            return fixedSize;
        }

        int edge = ShortestEdge!.Value;
        int shortSide = Math.Min(width, height), longSide = Math.Max(width, height);
        // int(edge * long / short) in Python: a float64 quotient, truncated.
        double newLong = Math.Truncate((double)((long)edge * longSide) / shortSide);
        if (newLong > int.MaxValue)
        {
            throw new ArgumentException($"A {width} × {height} image resized to a shortest edge of {edge} would be {newLong} pixels long.");
        }

        return width <= height ? new ImageSize((int)newLong, edge) : new ImageSize(edge, (int)newLong);
    }

    /// <summary>The size of <see cref="Preprocess"/>'s result for an image of this size.</summary>
    public ImageSize OutputSize(int width, int height) => DoCenterCrop ? CropSize : ResizedSize(width, height);

    /// <summary>The image's pixel values, float32 <c>[3, H, W]</c>, as transformers' CLIPImageProcessor (PIL backend) gives them.</summary>
    public ProcessedImage Preprocess(RgbImage image)
    {
        ImageSize resized = ResizedSize(image.Width, image.Height);
        ImageSize output = DoCenterCrop ? CropSize : resized;
        if (3L * output.Height * output.Width > Array.MaxLength)
        {
            throw new ArgumentException($"A {image.Width} × {image.Height} image preprocesses to {output.Width} × {output.Height}, too large to hold.", nameof(image));
        }

        // transformers' numpy center_crop starts the window at (size - crop) // 2 on each axis, which is negative
        // where the crop is larger: there it pads with zeros, ceil(margin / 2) before the image, in 8 bits before
        // rescale and normalize, so padding comes out as each channel's value for level 0.
        int top = FloorHalf(resized.Height - output.Height);
        int left = FloorHalf(resized.Width - output.Width);
        // Only the part of the resized image that the crop keeps is resampled (a quarter less work for a 4:3 photo).
        var kept = new PixelWindow(
            Math.Max(left, 0), Math.Max(top, 0),
            Math.Min(resized.Width, left + output.Width) - Math.Max(left, 0), Math.Min(resized.Height, top + output.Height) - Math.Max(top, 0));
        byte[] planar = DoResize
            ? ImageResampler.Resize(image, resized.Width, resized.Height, Resample, kept)
            : ImageResampler.ToPlanar(image, kept);

        int keptPlane = kept.Height * kept.Width, outPlane = output.Height * output.Width;
        // Output pixel (y, x) is resized pixel (y + top, x + left): kept pixel (0, 0) lands after the padding, if any.
        int padTop = kept.Top - top, padLeft = kept.Left - left;
        float[] pixels = new float[3 * outPlane];
        for (int c = 0; c < 3; c++)
        {
            ReadOnlySpan<float> levels = _levels.AsSpan(c * 256, 256);
            ReadOnlySpan<byte> source = planar.AsSpan(c * keptPlane, keptPlane);
            Span<float> target = pixels.AsSpan(c * outPlane, outPlane);
            target.Fill(levels[0]);
            for (int y = 0; y < kept.Height; y++)
            {
                ReadOnlySpan<byte> row = source.Slice(y * kept.Width, kept.Width);
                Span<float> outRow = target.Slice((padTop + y) * output.Width + padLeft, kept.Width);
                for (int x = 0; x < row.Length; x++)
                {
                    outRow[x] = levels[row[x]];
                }
            }
        }

        return new ProcessedImage(pixels, output.Height, output.Width);
    }

    // Python's // 2: rounds toward negative infinity, as the arithmetic shift does.
    private static int FloorHalf(int value) => value >> 1;

    /// <summary>Whether the file configures a SiglipImageProcessor; refuses processors this class does not implement.</summary>
    private static bool IsSiglip(JsonElement root)
    {
        string? type = JsonFields.OptionalString(root, "image_processor_type", F);
        if (type is null)
        {
            // Configs written before image processors name the feature extractor; AutoImageProcessor maps
            // CLIPFeatureExtractor to CLIPImageProcessor.
            string? legacy = JsonFields.OptionalString(root, "feature_extractor_type", F);
            if (legacy is not null && legacy != "CLIPFeatureExtractor")
            {
                throw new ModelConfigException($"{F}: 'feature_extractor_type' is '{legacy}'; Celer's ClipImageProcessor implements CLIPImageProcessor only");
            }

            return false;
        }

        if (SiglipProcessorTypes.Contains(type))
        {
            return true;
        }

        if (!ProcessorTypes.Contains(type))
        {
            throw new ModelConfigException($"{F}: 'image_processor_type' is '{type}'; Celer's ClipImageProcessor implements CLIPImageProcessor and SiglipImageProcessor (and their Fast variants) only");
        }

        return false;
    }

    /// <summary><c>size</c>: a dict with shortest_edge or height and width, or the older int (or [height, width]) form; <paramref name="absent"/> without one.</summary>
    private static (int? ShortestEdge, ImageSize? Size) ReadResizeSize(JsonElement root, bool defaultToSquare, (int? ShortestEdge, ImageSize? Size) absent)
    {
        if (!JsonFields.TryGet(root, "size", out var size))
        {
            return absent;
        }

        switch (size.ValueKind)
        {
            case JsonValueKind.Number:
                int n = ReadPixels(size, "size");
                return defaultToSquare ? (null, new ImageSize(n, n)) : (n, null);
            case JsonValueKind.Array:
                return (null, ReadPair(size, "size"));
            case JsonValueKind.Object:
                var keys = PresentKeys(size);
                if (keys.SetEquals(["shortest_edge"]))
                {
                    return (ReadPixels(size.GetProperty("shortest_edge"), "size.shortest_edge"), null);
                }

                if (keys.SetEquals(["height", "width"]))
                {
                    return (null, ReadHeightWidth(size, "size"));
                }

                throw new ModelConfigException($"{F}: 'size' has keys {{{string.Join(", ", keys.Order(StringComparer.Ordinal))}}}; CLIPImageProcessor resizes to {{\"shortest_edge\": n}} or {{\"height\": h, \"width\": w}}");
            default:
                throw new ModelConfigException($"{F}: field 'size' must be a dict, an integer or [height, width], got {Shorten(size)}");
        }
    }

    /// <summary><c>crop_size</c>: a dict with height and width, or the older int (a square) or [height, width] form.</summary>
    private static ImageSize ReadCropSize(JsonElement root)
    {
        if (!JsonFields.TryGet(root, "crop_size", out var crop))
        {
            return new ImageSize(DefaultSize, DefaultSize);
        }

        switch (crop.ValueKind)
        {
            case JsonValueKind.Number:
                int n = ReadPixels(crop, "crop_size");
                return new ImageSize(n, n);
            case JsonValueKind.Array:
                return ReadPair(crop, "crop_size");
            case JsonValueKind.Object when PresentKeys(crop).SetEquals(["height", "width"]):
                return ReadHeightWidth(crop, "crop_size");
            default:
                throw new ModelConfigException($"{F}: field 'crop_size' must be {{\"height\": h, \"width\": w}}, an integer or [height, width], got {Shorten(crop)}");
        }
    }

    private static HashSet<string> PresentKeys(JsonElement obj) =>
        obj.EnumerateObject().Where(p => p.Value.ValueKind != JsonValueKind.Null).Select(p => p.Name).ToHashSet(StringComparer.Ordinal);

    private static ImageSize ReadHeightWidth(JsonElement obj, string name) =>
        new(ReadPixels(obj.GetProperty("height"), name + ".height"), ReadPixels(obj.GetProperty("width"), name + ".width"));

    private static ImageSize ReadPair(JsonElement array, string name)
    {
        if (array.GetArrayLength() != 2)
        {
            throw new ModelConfigException($"{F}: field '{name}' as a list must be [height, width], got {Shorten(array)}");
        }

        return new ImageSize(ReadPixels(array[0], name + "[0]"), ReadPixels(array[1], name + "[1]"));
    }

    private static int ReadPixels(JsonElement value, string name)
    {
        if (value.ValueKind == JsonValueKind.Number && value.TryGetDouble(out double d) && d == Math.Floor(d) && d >= 1 && d <= int.MaxValue)
        {
            return (int)d;
        }

        throw new ModelConfigException($"{F}: '{name}' must be a positive whole number of pixels, got {Shorten(value)}");
    }

    /// <summary><c>image_mean</c> or <c>image_std</c>: three numbers, or one for all channels.</summary>
    private static double[] ReadChannels(JsonElement root, string name, double[] defaults)
    {
        if (!JsonFields.TryGet(root, name, out var value))
        {
            return [.. defaults];
        }

        if (value.ValueKind == JsonValueKind.Number)
        {
            double single = JsonFields.OptionalDouble(root, name, F)!.Value;
            return [single, single, single];
        }

        if (value.ValueKind != JsonValueKind.Array || value.GetArrayLength() != 3)
        {
            throw new ModelConfigException($"{F}: field '{name}' must be a number or a list of 3 (R, G, B), got {Shorten(value)}");
        }

        var channels = new double[3];
        for (int c = 0; c < 3; c++)
        {
            if (value[c].ValueKind != JsonValueKind.Number || !value[c].TryGetDouble(out channels[c]) || !double.IsFinite(channels[c]))
            {
                throw new ModelConfigException($"{F}: field '{name}' must hold finite numbers, got {Shorten(value)}");
            }
        }

        return channels;
    }

    private static string Shorten(JsonElement value)
    {
        string text = value.GetRawText();
        return text.Length > 60 ? text[..60] + "…" : text;
    }
}
