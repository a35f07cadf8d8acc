using Celer.Engine.Multimodal;
using Celer.Engine.Scheduling;
using Celer.Models.Multimodal;
using Xunit;

namespace Celer.Engine.Tests.Multimodal;

/// <summary>
/// The input processor's image half: each placeholder expanded to the image's feature count before the length checks,
/// and the images preprocessed only once the request has passed every other check.
/// </summary>
public sealed class ImagePromptsTests
{
    private const int ImageToken = 511, Features = 16;

    private int _preprocessed;

    private InputProcessor Processor() => new(tokenizer: null, vocabSize: 512, maxModelLen: 64, eosTokenId: null,
        images: new ImagePrompts(ImageToken, Features, image =>
        {
            _preprocessed++;
            return [image.Pixels[0], image.Pixels[1], image.Pixels[2]];
        }));

    private static RgbImage Image(byte red) => new(1, 1, [red, 20, 30]);

    [Fact]
    public void Placeholders_expand_and_each_image_is_preprocessed_once_in_place()
    {
        var request = new GenerateRequest("r", [5, ImageToken, 6, ImageToken, 7], new SamplingParams { MaxTokens = 4 })
        {
            Images = [Image(1), Image(2)],
        };
        Request processed = Assert.Single(Processor().Process(request, 0));
        Assert.Equal(3 + 2 * Features, processed.NumPromptTokens);
        Assert.Equal([1, 2 + Features], processed.Images.Select(i => i.Offset));
        Assert.All(processed.Images, i => Assert.Equal(Features, i.Length));
        Assert.Equal([1f, 2f], processed.Images.Select(i => i.PixelValues[0]));
        Assert.Equal(Image(2).Hash, processed.Images[1].Hash);
        Assert.Equal(2, _preprocessed);
    }

    [Fact]
    public void A_request_refused_for_another_reason_preprocesses_no_image()
    {
        InputProcessor processor = Processor();
        GenerateRequest Request(SamplingParams p) => new("r", [5, ImageToken, 6], p) { Images = [Image(3)] };

        Assert.Throws<SamplingParamsException>(() => processor.Process(Request(new SamplingParams { Temperature = float.NaN }), 0));
        // 18 prompt tokens once the placeholder is expanded, and 50 more, do not fit in 64: the image's features count.
        Assert.Throws<EngineRequestException>(() => processor.Process(Request(new SamplingParams { MaxTokens = 50 }), 0));
        Assert.Throws<EngineRequestException>(() => processor.Process(Request(new SamplingParams { BestOf = 2 }), 0));
        Assert.Equal(0, _preprocessed);

        Assert.Single(processor.Process(Request(new SamplingParams { MaxTokens = 46 }), 0));
        Assert.Equal(1, _preprocessed);
    }
}
