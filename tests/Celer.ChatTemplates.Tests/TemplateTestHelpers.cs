using System.Text.Json.Nodes;

namespace Celer.ChatTemplates.Tests;

internal static class TemplateTestHelpers
{
    /// <summary>Parses and renders <paramref name="template"/> with a JSON object literal as the context.</summary>
    public static string Render(string template, string contextJson = "{}", TemplateLimits? limits = null) =>
        ChatTemplate.Parse(template, limits).Render(JsonNode.Parse(contextJson)!.AsObject());

    public static string FixturesDir()
    {
        var copied = Path.Combine(AppContext.BaseDirectory, "fixtures", "chat_templates");
        if (Directory.Exists(copied)) return copied;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "tests", "fixtures", "chat_templates");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("tests/fixtures/chat_templates not found above the test binaries");
    }

    public static string ReadFixture(string name) => File.ReadAllText(Path.Combine(FixturesDir(), name));
}
