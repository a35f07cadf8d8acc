using System.Text.Json.Nodes;
using Celer.ChatTemplates.Runtime;
using Xunit;
using static Celer.ChatTemplates.Tests.TemplateTestHelpers;

namespace Celer.ChatTemplates.Tests;

/// <summary>The real model templates in tests/fixtures/chat_templates render the features each model depends on.</summary>
public class RealTemplateTests
{
    private const string WeatherTool = """{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}""";

    private static string RenderFixture(string file, string contextJson) =>
        ChatTemplate.Parse(ReadFixture(file)).Render(JsonNode.Parse(contextJson)!.AsObject());

    [Fact]
    public void ChatML_exact() => Assert.Equal(
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
        RenderFixture("chatml.jinja", """{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}], "add_generation_prompt": true}"""));

    [Fact]
    public void Llama2_wraps_the_system_prompt_into_the_first_turn() => Assert.Equal(
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello </s><s>[INST] Bye [/INST]",
        RenderFixture("llama-2.jinja", """{"bos_token": "<s>", "eos_token": "</s>", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": " Hello "}, {"role": "user", "content": "Bye"}]}"""));

    [Fact]
    public void Llama31_headers_date_and_trimmed_content() => Assert.Equal(
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|>"
        + "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
        RenderFixture("llama-3.1.jinja", """{"bos_token": "<|begin_of_text|>", "date_string": "26 Jul 2024", "add_generation_prompt": true, "messages": [{"role": "system", "content": " Be brief. "}, {"role": "user", "content": "  Hi\n"}]}"""));

    [Fact]
    public void Llama31_tools_go_into_the_first_user_message_and_calls_render_as_json()
    {
        var text = RenderFixture("llama-3.1.jinja", $$$$"""
            {"bos_token": "<|begin_of_text|>", "date_string": "26 Jul 2024", "tools": [{{{{WeatherTool}}}}], "messages": [
              {"role": "user", "content": "Weather in Bern?"},
              {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Bern"}}}]},
              {"role": "tool", "content": "sunny"}]}
            """);
        Assert.Contains("system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date", text);
        Assert.Contains("<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions", text);
        // tojson(indent=4) of the tool, then the user's own text.
        Assert.Contains("{\n    \"type\": \"function\",\n    \"function\": {\n        \"name\": \"get_weather\",", text);
        Assert.Contains("\n\nWeather in Bern?<|eot_id|>", text);
        Assert.Contains("<|start_header_id|>assistant<|end_header_id|>\n\n{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Bern\"}}<|eot_id|>", text);
        // A string tool result "is iterable", so the template JSON-quotes it.
        Assert.EndsWith("<|start_header_id|>ipython<|end_header_id|>\n\n\"sunny\"<|eot_id|>", text);
    }

    [Fact]
    public void Llama31_rejects_parallel_tool_calls()
    {
        var e = Assert.Throws<TemplateRenderException>(() => RenderFixture("llama-3.1.jinja", """
            {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
              {"function": {"name": "a", "arguments": {}}}, {"function": {"name": "b", "arguments": {}}}]}]}
            """));
        Assert.True(e.RaisedByTemplate);
        Assert.Equal("This model only supports single tool-calls at once!", e.Message);
    }

    [Fact]
    public void Llama32_takes_today_from_strftime_now()
    {
        var template = ChatTemplate.Parse(ReadFixture("llama-3.2.jinja"), TemplateLimits.Default, () => new DateTimeOffset(2025, 3, 5, 23, 59, 0, TimeSpan.Zero));
        var text = template.Render(JsonNode.Parse("""{"messages": [{"role": "user", "content": "Hi"}]}""")!.AsObject());
        Assert.Contains("Today Date: 05 Mar 2025\n\n", text);
    }

    [Fact]
    public void Strftime_codes() => Assert.Equal(
        "05 Mar March 2025 03 23:59:07 Wed 064 %",
        Strftime.Format(new DateTimeOffset(2025, 3, 5, 23, 59, 7, TimeSpan.Zero), "%d %b %B %Y %m %H:%M:%S %a %j %%"));

    [Fact]
    public void Qwen25_default_system_prompt_and_tool_calls() => Assert.Equal(
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        + "<|im_start|>assistant\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Bern\"}}\n</tool_call><|im_end|>\n"
        + "<|im_start|>user\n<tool_response>\nsunny\n</tool_response>\n<tool_response>\nwarm\n</tool_response><|im_end|>\n<|im_start|>assistant\n",
        RenderFixture("qwen2.5.jinja", """
            {"add_generation_prompt": true, "messages": [{"role": "user", "content": "Hi"},
              {"role": "assistant", "content": "", "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Bern"}}}]},
              {"role": "tool", "content": "sunny"}, {"role": "tool", "content": "warm"}]}
            """));

    [Fact]
    public void Qwen3_keeps_reasoning_only_after_the_last_user_query() => Assert.Equal(
        "<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n"
        + "<|im_start|>assistant\n<think>\nWhy 2\n</think>\n\nA2<|im_end|>\n",
        RenderFixture("qwen3.jinja", """
            {"messages": [{"role": "user", "content": "Q1"}, {"role": "assistant", "content": "<think>\nWhy 1\n</think>\n\nA1"},
              {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2", "reasoning_content": "\nWhy 2\n"}]}
            """));

    [Fact]
    public void Qwen3_enable_thinking_false_adds_an_empty_think_block() => Assert.EndsWith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n",
        RenderFixture("qwen3.jinja", """{"add_generation_prompt": true, "enable_thinking": false, "messages": [{"role": "user", "content": "Q"}]}"""));

    [Fact]
    public void Mistral_tool_calls_carry_ids_and_alternation_is_enforced()
    {
        var text = RenderFixture("mistral-v0.3.jinja", $$$$"""
            {"bos_token": "<s>", "eos_token": "</s>", "tools": [{{{{WeatherTool}}}}], "messages": [{"role": "user", "content": "Bern?"},
              {"role": "assistant", "tool_calls": [{"id": "abcDEF123", "function": {"name": "get_weather", "arguments": {"city": "Bern"}}}]},
              {"role": "tool", "tool_call_id": "abcDEF123", "content": "sunny"}]}
            """);
        Assert.StartsWith("<s>[AVAILABLE_TOOLS] [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"Weather in a city\", \"parameters\": {", text);
        Assert.Contains("[/AVAILABLE_TOOLS][INST] Bern?[/INST][TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Bern\"}, \"id\": \"abcDEF123\"}]</s>", text);
        Assert.EndsWith("[TOOL_RESULTS] {\"content\": sunny, \"call_id\": \"abcDEF123\"}[/TOOL_RESULTS]", text);

        var e = Assert.Throws<TemplateRenderException>(() => RenderFixture("mistral-v0.3.jinja",
            """{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}"""));
        Assert.True(e.RaisedByTemplate);
        Assert.Equal("After the optional system message, conversation roles must alternate user/assistant/user/assistant/...", e.Message);
    }

    [Fact]
    public void Gemma3_uses_the_model_role_and_folds_the_system_prompt_into_the_first_turn() => Assert.Equal(
        "<bos><start_of_turn>user\nBe brief.\n\n<start_of_image>Hi<end_of_turn>\n<start_of_turn>model\nHello<end_of_turn>\n<start_of_turn>model\n",
        RenderFixture("gemma3.jinja", """
            {"bos_token": "<bos>", "add_generation_prompt": true, "messages": [{"role": "system", "content": "Be brief."},
              {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " Hi "}]}, {"role": "assistant", "content": "Hello "}]}
            """));
}
