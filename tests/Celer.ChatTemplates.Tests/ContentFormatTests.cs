using Xunit;
using static Celer.ChatTemplates.Tests.TemplateTestHelpers;

namespace Celer.ChatTemplates.Tests;

/// <summary>
/// Content-format detection (vLLM's <c>--chat-template-content-format auto</c>) and the Jinja that multimodal templates
/// use to place image tokens.
/// </summary>
public class ContentFormatTests
{
    /// <summary>llava-hf/llava-1.5-7b-hf's chat template (as transformers' LLaVA processor tests carry it).</summary>
    internal const string Llava15Template =
        "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': '}}{% endif %}"
        + "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
        + "{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' '}}{% endfor %}"
        + "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] + ' '}}{% endgeneration %}{% endfor %}{% endif %}"
        + "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}";

    [Fact]
    public void Llava_places_every_image_before_the_text_of_its_message() => Assert.Equal(
        "USER: <image>\n<image>\nCompare these. ASSISTANT: They differ. USER: And now? ASSISTANT:",
        Render(Llava15Template, """
            {"add_generation_prompt": true, "messages": [
              {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Compare these."}, {"type": "image"}]},
              {"role": "assistant", "content": [{"type": "text", "text": "They differ."}]},
              {"role": "user", "content": [{"type": "text", "text": "And now?"}]}]}
            """));

    [Fact]
    public void Rejectattr_with_equalto_keeps_the_other_parts() => Assert.Equal(
        "text,text,",
        Render("{% for p in parts | rejectattr('type', 'equalto', 'image') %}{{ p.type }},{% endfor %}",
            """{"parts": [{"type": "text"}, {"type": "image"}, {"type": "text"}]}"""));

    [Theory]
    [InlineData("gemma3.jinja", ChatTemplateContentFormat.OpenAI)]
    [InlineData("chatml.jinja", ChatTemplateContentFormat.String)]
    [InlineData("qwen2.5.jinja", ChatTemplateContentFormat.String)]
    [InlineData("llama-3.1.jinja", ChatTemplateContentFormat.String)]
    [InlineData("mistral-v0.3.jinja", ChatTemplateContentFormat.String)]
    public void Real_templates_are_detected_as_vllm_detects_them(string file, ChatTemplateContentFormat expected) =>
        Assert.Equal(expected, ChatTemplate.Parse(ReadFixture(file)).ContentFormat);

    [Theory]
    // LLaVA: a filtered loop over message['content'].
    [InlineData(Llava15Template, ChatTemplateContentFormat.OpenAI)]
    [InlineData("{% for m in messages %}{% for p in m.content %}{{ p.text }}{% endfor %}{% endfor %}", ChatTemplateContentFormat.OpenAI)]
    // Messages reached through a sliced copy, then a copy of that (gemma's loop_messages).
    [InlineData("{% set rest = messages[1:] %}{% set loop_messages = rest %}{% for m in loop_messages %}{% for p in m['content'] %}{{ p }}{% endfor %}{% endfor %}", ChatTemplateContentFormat.OpenAI)]
    // A macro handed the content loops over it by the name content.
    [InlineData("{% macro render(content) %}{% for item in content %}{{ item.text }}{% endfor %}{% endmacro %}{% for m in messages %}{{ render(m.content) }}{% endfor %}", ChatTemplateContentFormat.OpenAI)]
    [InlineData("{% for m in messages %}{{ m['content'] }}{% endfor %}", ChatTemplateContentFormat.String)]
    // A loop over the content of something that is not a message is no evidence.
    [InlineData("{% for t in tools %}{% for p in t['content'] %}{{ p }}{% endfor %}{% endfor %}{% for m in messages %}{{ m.content }}{% endfor %}", ChatTemplateContentFormat.String)]
    // Looping over the characters of the first message's content: vLLM does not follow messages[0] either.
    [InlineData("{% set first = messages[0] %}{% for c in first.content %}{{ c }}{% endfor %}", ChatTemplateContentFormat.String)]
    public void Detection_follows_loops_over_message_content(string template, ChatTemplateContentFormat expected) =>
        Assert.Equal(expected, ChatTemplate.Parse(template).ContentFormat);
}
