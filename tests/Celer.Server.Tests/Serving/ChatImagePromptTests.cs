using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.ChatTemplates;
using Celer.Server.Media;
using Celer.Server.Serving;
using Celer.Server.Tests.Media;
using Celer.TestSupport;
using Celer.Tokenization;

namespace Celer.Server.Tests.Serving;

/// <summary>
/// A chat with images through to what the engine gets, for a model whose image token is set: the default model's
/// tokenizer with LLaVA's <c>&lt;image&gt;</c> added as a special token (id 8192, after its 8192-token vocabulary).
/// </summary>
public class ChatImagePromptTests
{
    private const int ImageTokenId = 8192;

    /// <summary>llava-hf/llava-1.5-7b-hf's chat template (as transformers' LLaVA processor tests carry it).</summary>
    private const string LlavaTemplate =
        "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
        + "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
        + "{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
        + "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
        + "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

    private const string ChatMlTemplate =
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    private static readonly Lazy<Tokenizer> LlavaTokenizer = new(() =>
    {
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(RepoPaths.DefaultModel, "tokenizer.json")))!;
        json["added_tokens"]!.AsArray().Add((JsonNode)new JsonObject
        {
            ["id"] = ImageTokenId, ["content"] = "<image>", ["single_word"] = false, ["lstrip"] = false, ["rstrip"] = false,
            ["normalized"] = false, ["special"] = true,
        });
        return Tokenizer.FromJson(json.ToJsonString());
    });

    private static readonly string ImageA = TestImages.DataUrl(TestImages.Png(4, 4, TestImages.RandomRgba(4, 4, seed: 21)));
    private static readonly string ImageB = TestImages.DataUrl(TestImages.Png(5, 3, TestImages.RandomRgba(5, 3, seed: 22)));

    private static ChatContentRules Rules(ChatTemplateContentFormat? format = null, int limit = MediaOptions.DefaultImageLimit) =>
        new() { Format = format, ImagePlaceholder = "<image>", ImageLimit = limit };

    private static ChatPrompt Render(string messagesJson, string template, ChatContentRules rules, IReadOnlyList<string>? specialTokens = null, bool continueFinal = false)
    {
        var parsed = ChatTemplate.Parse(template);
        var messages = JsonDocument.Parse(messagesJson).RootElement.Clone();
        return ChatPromptBuilder.Render(new ChatRenderRequest(messages, null, null, !continueFinal, continueFinal, null, null),
            TokenizerConfig.Empty, specialTokens ?? ServingModel.SpecialTokenTextsOf(LlavaTokenizer.Value), _ => parsed, rules);
    }

    private static string Part(string url) => $$$"""{"type": "image_url", "image_url": {"url": "{{{url}}}"}}""";

    private static string TwoImagesAroundText => $$"""[{"role": "user", "content": [{{Part(ImageA)}}, {"type": "text", "text": "What differs?"}, {{Part(ImageB)}}]}]""";

    [Fact]
    public async Task Two_images_become_one_image_token_each_and_reach_the_engine_in_order()
    {
        var prompt = Render(TwoImagesAroundText, LlavaTemplate, Rules());
        Assert.Equal("USER: <image>\n<image>\nWhat differs? ASSISTANT:", prompt.Text);
        Assert.Equal([ImageA, ImageB], prompt.Images.Select(i => i.Url));
        Assert.Equal(["messages[0].content[0]", "messages[0].content[2]"], prompt.Images.Select(i => i.Param));

        var tokenizer = LlavaTokenizer.Value;
        var ids = ChatService.EncodePrompt(prompt, tokenizer, ImageTokenId, addSpecialTokens: false);
        int[] expected = [.. tokenizer.Encode("USER: ", false), ImageTokenId, .. tokenizer.Encode("\n", false), ImageTokenId, .. tokenizer.Encode("\nWhat differs? ASSISTANT:", false)];
        Assert.Equal(expected, ids);

        var images = await new ImageLoader(new MediaOptions()).LoadAsync(prompt.Images, TestContext.Current.CancellationToken);
        Assert.Equal([(4, 4), (5, 3)], images.Select(i => (i.Width, i.Height)));
    }

    [Fact]
    public void The_llava_template_is_given_openai_parts_and_a_string_template_one_string()
    {
        Assert.Equal(JsonNode.Parse("""[{"type": "image"}, {"type": "text", "text": "What differs?"}, {"type": "image"}]"""),
            Render(TwoImagesAroundText, LlavaTemplate, Rules()).Conversation[0]!["content"], JsonNode.DeepEquals);

        // vLLM's string format: a placeholder per image, joined by "\n", in front of the message's text.
        var prompt = Render("""[{"role": "user", "content": [{"type": "text", "text": "a"}, """ + Part(ImageA) + """, {"type": "text", "text": "b"}, """ + Part(ImageB) + "]}]",
            ChatMlTemplate, Rules());
        Assert.Equal("<image>\n<image>\na\nb", prompt.Conversation[0]!["content"]!.GetValue<string>());
        Assert.Equal(2, ChatService.EncodePrompt(prompt, LlavaTokenizer.Value, ImageTokenId, false).Count(id => id == ImageTokenId));

        // --interleave-mm-strings: each placeholder where its part is, the images still in the order of their placeholders.
        var interleaved = Render("""[{"role": "user", "content": [{"type": "text", "text": "a"}, """ + Part(ImageA) + """, {"type": "text", "text": "b"}, """ + Part(ImageB) + "]}]",
            ChatMlTemplate, Rules() with { InterleaveStrings = true });
        Assert.Equal("a\n<image>\nb\n<image>", interleaved.Conversation[0]!["content"]!.GetValue<string>());
        Assert.Equal([ImageA, ImageB], interleaved.Images.Select(i => i.Url));

        var imagesOnly = Render($$"""[{"role": "user", "content": [{{Part(ImageA)}}]}]""", ChatMlTemplate, Rules());
        Assert.Equal("<image>", imagesOnly.Conversation[0]!["content"]!.GetValue<string>());
    }

    [Fact]
    public void A_template_that_drops_the_images_is_a_400()
    {
        // Forced to strings, LLaVA's template finds no image parts to write.
        var prompt = Render(TwoImagesAroundText, LlavaTemplate, Rules(ChatTemplateContentFormat.String));
        Assert.Equal("USER: ASSISTANT:", prompt.Text);
        var e = Assert.Throws<OpenAIException>(() => ChatService.EncodePrompt(prompt, LlavaTokenizer.Value, ImageTokenId, false));
        Assert.Equal(400, e.StatusCode);
        Assert.Contains("0 image token(s) ('<image>', id 8192) for 2 image part(s)", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_image_token_with_no_image_is_a_400()
    {
        var prompt = Render("""[{"role": "user", "content": "Hi"}]""", "<image>{{ messages[0]['content'] }}", Rules());
        Assert.Contains("1 image token(s) ('<image>', id 8192) for 0 image part(s)",
            Assert.Throws<OpenAIException>(() => ChatService.EncodePrompt(prompt, LlavaTokenizer.Value, ImageTokenId, false)).Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]   // not marked special: refused all the same, as it would still become the image token
    public void Text_that_spells_the_image_token_is_refused(bool special)
    {
        var e = Assert.Throws<OpenAIException>(() => Render($$"""[{"role": "user", "content": [{{Part(ImageA)}}, {"type": "text", "text": "and <image> too"}]}]""",
            LlavaTemplate, Rules(), specialTokens: special ? null : []));
        Assert.Equal("messages[0].content[1]", e.Param);
        Assert.Contains("'<image>'", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void More_images_than_the_limit_are_refused_with_vllms_message()
    {
        Assert.Single(Render($$"""[{"role": "user", "content": [{{Part(ImageA)}}]}]""", LlavaTemplate, Rules(limit: 1)).Images);
        var e = Assert.Throws<OpenAIException>(() => Render(
            $$"""[{"role": "user", "content": [{{Part(ImageA)}}]}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": [{{Part(ImageB)}}]}]""",
            LlavaTemplate, Rules(limit: 1)));
        Assert.Equal("At most 1 image(s) may be provided in one prompt. Set `--limit-mm-per-prompt` to increase this limit.", e.Message);
        Assert.Equal("messages[2].content[0]", e.Param);
    }

    [Theory]
    [InlineData("""{"type": "image_url", "image_url": {"url": "U", "detail": "low"}}""")]
    [InlineData("""{"image_url": "U"}""")]
    [InlineData("""{"image_url": {"url": "U"}}""")]
    [InlineData("""{"type": "input_image", "image_url": "U"}""")]
    public void Image_parts_are_read_in_the_shapes_vllm_reads(string part) =>
        Assert.Equal("U", Render($$"""[{"role": "user", "content": [{{part}}]}]""", LlavaTemplate, Rules()).Images.Single().Url);

    [Theory]
    [InlineData("""{"type": "image_url", "image_url": "U"}""", "an object with a string `url`")]
    [InlineData("""{"type": "image_url"}""", "has no `image_url`")]
    [InlineData("""{"type": "image_url", "image_url": {"url": ""}}""", "empty URL")]
    [InlineData("""{"type": "input_image", "image_url": {"url": "U"}}""", "a string `image_url`")]
    [InlineData("""{"type": "image", "image": "U"}""", "Unsupported chat content part type 'image'")]
    [InlineData("""{"url": "U"}""", "a string `type`")]
    public void Other_image_shapes_are_refused(string part, string expected)
    {
        var e = Assert.Throws<OpenAIException>(() => Render($$"""[{"role": "user", "content": [{"type": "text", "text": "x"}, {{part}}]}]""", LlavaTemplate, Rules()));
        Assert.Equal("messages[0].content[1]", e.Param);
        Assert.Contains(expected, e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_text_only_model_and_an_endpoint_that_loads_no_images_refuse_image_parts()
    {
        var messages = $$"""[{"role": "user", "content": [{{Part(ImageA)}}]}]""";
        Assert.Contains("this model takes text only", Assert.Throws<OpenAIException>(() => Render(messages, LlavaTemplate, ChatContentRules.TextOnly)).Message, StringComparison.Ordinal);
        Assert.Contains("/v1/chat/completions only",
            Assert.Throws<OpenAIException>(() => Render(messages, LlavaTemplate, Rules() with { ImagesRefused = "Image content parts are taken by /v1/chat/completions only." })).Message,
            StringComparison.Ordinal);
    }

    [Fact]
    public void Openai_format_wraps_strings_joins_tool_results_and_echoes_and_continues_text_parts()
    {
        var conversation = Render("""
            [{"role": "user", "content": "Hi"},
             {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "sun"}, {"type": "text", "text": "rain"}]},
             {"role": "assistant", "content": [{"type": "text", "text": "It is"}, {"type": "text", "text": "sunny"}]}]
            """, LlavaTemplate, Rules(), continueFinal: true);
        Assert.Equal(JsonNode.Parse("""[{"type": "text", "text": "Hi"}]"""), conversation.Conversation[0]!["content"], JsonNode.DeepEquals);
        Assert.Equal("sun\nrain", conversation.Conversation[1]!["content"]!.GetValue<string>());
        Assert.Equal("It is\nsunny", ChatPromptBuilder.LastContentIfRole(conversation.Conversation, "assistant"));
        // transformers continues the last text part.
        Assert.EndsWith("ASSISTANT: It is sunny", conversation.Text, StringComparison.Ordinal);
    }
}
