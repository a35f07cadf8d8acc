using System.ClientModel;
using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Models.Multimodal;
using Celer.Server.Tests.Media;
using Celer.Server.Tests.Support;
using Celer.TestSupport;
using OpenAI;
using OpenAI.Chat;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// A vision-language model behind the real server, through the official OpenAI .NET client: the tiny LLaVA fixture (whose
/// images and greedy outputs LlavaEngineTests checks against transformers) with a word-level tokenizer of its 512 ids
/// that has LLaVA's <c>&lt;image&gt;</c> at 511, served with llava-1.5's chat template. An image sent as a PNG part must
/// reach the model as the same pixels the engine's own tests feed it.
/// </summary>
public sealed class LlavaServerTests : IDisposable
{
    /// <summary>llava-hf/llava-1.5-7b-hf's chat template.</summary>
    private const string LlavaTemplate =
        "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
        + "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
        + "{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
        + "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
        + "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

    private readonly string _model = Path.Combine(Path.GetTempPath(), "celer-llava-" + Guid.NewGuid().ToString("N"));
    private readonly MultimodalReference _reference;

    public LlavaServerTests()
    {
        string fixture = Path.Combine(RepoPaths.Fixtures, "multimodal", "llava-clip-bf16");
        Directory.CreateDirectory(_model);
        foreach (string file in new[] { "config.json", "generation_config.json", "model.safetensors", "preprocessor_config.json" })
        {
            File.Copy(Path.Combine(fixture, file), Path.Combine(_model, file));
        }

        // Words w1 … w510 (anything else is [UNK], id 0), and <image> as the added special token the processor expands.
        var vocab = new JsonObject { ["[UNK]"] = 0, ["<image>"] = 511 };
        for (int i = 1; i < 511; i++)
        {
            vocab[$"w{i}"] = i;
        }

        var tokenizer = new JsonObject
        {
            ["version"] = "1.0",
            ["added_tokens"] = new JsonArray(new JsonObject
            {
                ["id"] = 511, ["content"] = "<image>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
            }),
            ["pre_tokenizer"] = new JsonObject { ["type"] = "WhitespaceSplit" },
            ["model"] = new JsonObject { ["type"] = "WordLevel", ["vocab"] = vocab, ["unk_token"] = "[UNK]" },
        };
        File.WriteAllText(Path.Combine(_model, "tokenizer.json"), tokenizer.ToJsonString());
        _reference = MultimodalReference.Load(fixture);
    }

    public void Dispose() => Directory.Delete(_model, recursive: true);

    private static ChatClient Chat(TinyPyServer server) =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") }).GetChatClient(ServerFixture.ModelName);

    private static ChatMessage[] Ask(params byte[][] pngs) =>
        [new UserChatMessage([.. pngs.Select(p => ChatMessageContentPart.CreateImagePart(BinaryData.FromBytes(p), "image/png")), ChatMessageContentPart.CreateTextPart("w5 w9 w300")])];

    private static byte[] Png(RgbImage image)
    {
        var rgba = new byte[image.Width * image.Height * 4];
        for (int i = 0; i < image.Width * image.Height; i++)
        {
            rgba[4 * i] = image.Pixels[3 * i];
            rgba[4 * i + 1] = image.Pixels[3 * i + 1];
            rgba[4 * i + 2] = image.Pixels[3 * i + 2];
            rgba[4 * i + 3] = 255;
        }

        return TestImages.Png(image.Width, image.Height, rgba);
    }

    [Fact]
    public async Task An_image_part_reaches_the_model_as_the_engine_reads_it_directly()
    {
        RgbImage first = _reference.Images[0].Image, second = _reference.Images[1].Image;
        await using var server = await TinyPyServer.StartAsync(model: _model, chatTemplate: LlavaTemplate, maxModelLen: 128);
        ChatClient chat = Chat(server);
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 0 };

        ChatCompletion one = (await chat.CompleteChatAsync(Ask(Png(first)), options, TestContext.Current.CancellationToken)).Value;
        ChatCompletion again = (await chat.CompleteChatAsync(Ask(Png(first)), options, TestContext.Current.CancellationToken)).Value;
        ChatCompletion other = (await chat.CompleteChatAsync(Ask(Png(second)), options, TestContext.Current.CancellationToken)).Value;
        ChatCompletion both = (await chat.CompleteChatAsync(Ask(Png(first), Png(second)), options, TestContext.Current.CancellationToken)).Value;

        // The rendered prompt: "USER: <image>\n" per image, the text, "ASSISTANT:"; each image expanded to its 16 features.
        int[] Prompt(int images) => [.. server.Model.Tokenizer!.Encode($"USER: {string.Concat(Enumerable.Repeat("<image>\n", images))}w5 w9 w300 ASSISTANT:", addSpecialTokens: false)];
        Assert.Equal(Prompt(1).Length + 15, one.Usage.InputTokenCount);
        Assert.Equal(Prompt(2).Length + 30, both.Usage.InputTokenCount);

        // The same requests straight to an engine of the same model, with the pixels the fixture holds.
        using LlmEngine direct = ModelLoader.LoadOffline(new EngineArgs { Model = _model, MaxModelLen = 128, MaxNumSeqs = 8, Seed = 0 }).Engine;
        var greedy = new SamplingParams { Temperature = 0, MaxTokens = 12 };
        IReadOnlyList<RequestOutput> expected = direct.Generate(
        [
            new GenerateRequest("one", Prompt(1), greedy) { Images = [first] },
            new GenerateRequest("other", Prompt(1), greedy) { Images = [second] },
            new GenerateRequest("both", Prompt(2), greedy) { Images = [first, second] },
        ]);
        string Text(int i) => string.Concat(expected[i].Outputs.Select(o => o.TextDelta));
        Assert.Equal(Text(0), one.Content[0].Text);
        Assert.Equal(Text(0), again.Content[0].Text);
        Assert.Equal(Text(1), other.Content[0].Text);
        Assert.Equal(Text(2), both.Content[0].Text);
        Assert.NotEqual(one.Content[0].Text, other.Content[0].Text);
    }

    [Fact]
    public async Task Bad_images_are_400s_and_the_model_keeps_serving()
    {
        await using var server = await TinyPyServer.StartAsync(model: _model, chatTemplate: LlavaTemplate, maxModelLen: 128);
        ChatClient chat = Chat(server);
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 4, Temperature = 0 };
        byte[] truncated = Png(_reference.Images[0].Image)[..40];
        var refused = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync(Ask(truncated), options, TestContext.Current.CancellationToken));
        Assert.Equal(400, refused.Status);
        Assert.Contains("messages[0].content[0]", refused.GetRawResponse()!.Content.ToString(), StringComparison.Ordinal);

        // A prompt of 128 tokens cannot hold eight images of 16 features and the text; the message counts the features.
        byte[] png = Png(_reference.Images[1].Image);
        refused = await Assert.ThrowsAsync<ClientResultException>(() => chat.CompleteChatAsync(Ask([.. Enumerable.Repeat(png, 8)]), options, TestContext.Current.CancellationToken));
        Assert.Equal(400, refused.Status);
        Match counted = Regex.Match(refused.GetRawResponse()!.Content.ToString(), @"maximum context length is 128 tokens\. However, your request has (\d+) input tokens");
        Assert.True(counted.Success, refused.GetRawResponse()!.Content.ToString());
        Assert.InRange(int.Parse(counted.Groups[1].Value, CultureInfo.InvariantCulture), (8 * 16) + 1, 256);

        ChatCompletion fine = (await chat.CompleteChatAsync(Ask(png), options, TestContext.Current.CancellationToken)).Value;
        Assert.Equal(4, fine.Usage.OutputTokenCount);
    }
}
