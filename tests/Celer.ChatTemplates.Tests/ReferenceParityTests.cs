using System.Text.Json.Nodes;
using Xunit;

namespace Celer.ChatTemplates.Tests;

/// <summary>
/// Every conversation in conversations.json rendered with our interpreter must equal what transformers renders
/// (expected.json, written by tools/reference/chat_templates.py on the GPU machine): byte-exact output, or an
/// error (for raise_exception, the same message).
/// </summary>
public class ReferenceParityTests
{
    private static readonly JsonObject Spec = JsonNode.Parse(TemplateTestHelpers.ReadFixture("conversations.json"))!.AsObject();

    public static TheoryData<string> CaseNames()
    {
        var data = new TheoryData<string>();
        foreach (var c in Spec["cases"]!.AsArray()) data.Add(c!["name"]!.GetValue<string>());
        return data;
    }

    [Theory]
    [MemberData(nameof(CaseNames))]
    public void Matches_transformers(string caseName)
    {
        var expectedPath = Path.Combine(TemplateTestHelpers.FixturesDir(), "expected.json");
        Assert.SkipUnless(File.Exists(expectedPath), "expected.json not generated yet (run tools/reference/chat_templates.py)");
        var expected = JsonNode.Parse(File.ReadAllText(expectedPath))!["cases"]![caseName]!.AsObject();

        var c = Spec["cases"]!.AsArray().Single(x => x!["name"]!.GetValue<string>() == caseName)!;
        var template = Spec["templates"]![c["template"]!.GetValue<string>()]!;
        var context = new JsonObject
        {
            ["messages"] = c["messages"]!.DeepClone(),
            ["add_generation_prompt"] = c["add_generation_prompt"]!.DeepClone(),
            ["bos_token"] = template["bos_token"]?.DeepClone(),
            ["eos_token"] = template["eos_token"]?.DeepClone(),
        };
        if (c["tools"] is { } tools) context["tools"] = tools.DeepClone();
        if (c["kwargs"] is JsonObject kwargs)
        {
            foreach (var (k, v) in kwargs) context[k] = v?.DeepClone();
        }

        // A model directory of the repository (its tokenizer_config.json's template), or a template file.
        string source = template["model"] is { } model
            ? JsonNode.Parse(File.ReadAllText(Path.Combine(Celer.TestSupport.RepoPaths.Root, model.GetValue<string>(), "tokenizer_config.json")))!["chat_template"]!.GetValue<string>()
            : TemplateTestHelpers.ReadFixture(template["file"]!.GetValue<string>());
        var chatTemplate = ChatTemplate.Parse(source);
        if (expected["output"] is { } output)
        {
            Assert.Equal(output.GetValue<string>(), chatTemplate.Render(context));
            return;
        }
        var error = Assert.Throws<TemplateRenderException>(() => chatTemplate.Render(context));
        if (expected["error_type"]!.GetValue<string>() == "TemplateError")
        {
            Assert.True(error.RaisedByTemplate);
            Assert.Equal(expected["error"]!.GetValue<string>(), error.Message);
        }
    }
}
