using System.Text.Json;

namespace Celer.Tokenization;

/// <summary>
/// What the engine needs from tokenizer_config.json (and chat_template.jinja): the special
/// token strings, whether BOS/EOS are added, the context limit and the chat templates.
/// </summary>
/// <param name="ModelMaxLength">Null when absent or set to transformers' "no limit" sentinel (int(1e30)).</param>
/// <param name="ChatTemplate">The default chat template: chat_template.jinja if present, else the string
/// <c>chat_template</c>, else the entry named "default" of a template list.</param>
/// <param name="ChatTemplates">Named templates from a <c>chat_template</c> list (e.g. "tool_use").</param>
public sealed record TokenizerConfig(
    string? BosToken,
    string? EosToken,
    string? PadToken,
    string? UnkToken,
    bool? AddBosToken,
    bool? AddEosToken,
    long? ModelMaxLength,
    string? ChatTemplate,
    IReadOnlyDictionary<string, string> ChatTemplates)
{
    /// <summary><c>tokenizer_class</c>: transformers 5 builds some classes' pipelines itself (<see cref="TransformersPipeline"/>).</summary>
    public string? TokenizerClass { get; init; }

    /// <summary>SentencePiece-era <c>legacy</c> (default true in transformers): with false, only the text's start gets "▁".</summary>
    public bool? Legacy { get; init; }

    /// <summary><c>add_prefix_space</c> (default true for Llama's class): false prepends no "▁" at all.</summary>
    public bool? AddPrefixSpace { get; init; }

    public const string FileName = "tokenizer_config.json";
    public const string ChatTemplateFileName = "chat_template.jinja";

    public static TokenizerConfig Empty { get; } =
        new(null, null, null, null, null, null, null, null, new Dictionary<string, string>());

    /// <summary>Reads the directory's tokenizer_config.json and chat_template.jinja; a missing file gives an empty config.</summary>
    public static TokenizerConfig Load(string modelDirectory)
    {
        var configPath = Path.Combine(modelDirectory, FileName);
        var config = File.Exists(configPath) ? FromJson(ReadText(configPath)) : Empty;
        var jinjaPath = Path.Combine(modelDirectory, ChatTemplateFileName);
        // transformers saves the template separately since 4.47 and reads that file first.
        return File.Exists(jinjaPath) ? config with { ChatTemplate = ReadText(jinjaPath) } : config;
    }

    public static TokenizerConfig FromJson(string json)
    {
        using var doc = TokenizerJson.Parse(json, FileName);
        var root = TokenizerJson.Object(doc.RootElement, "$");
        var (template, templates) = ParseChatTemplates(TokenizerJson.Optional(root, "chat_template"));
        return new TokenizerConfig(
            SpecialToken(root, "bos_token"),
            SpecialToken(root, "eos_token"),
            SpecialToken(root, "pad_token"),
            SpecialToken(root, "unk_token"),
            OptionalBool(root, "add_bos_token"),
            OptionalBool(root, "add_eos_token"),
            MaxLength(root),
            template,
            templates)
        {
            TokenizerClass = TokenizerJson.OptionalString(root, "tokenizer_class", "$"),
            Legacy = OptionalBool(root, "legacy"),
            AddPrefixSpace = OptionalBool(root, "add_prefix_space"),
        };
    }

    private static string ReadText(string path)
    {
        try
        {
            return File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TokenizerLoadException($"Cannot read '{Path.GetFileName(path)}': {e.Message}", e);
        }
    }

    /// <summary>A special token is a string or an AddedToken object <c>{"content": …}</c>.</summary>
    private static string? SpecialToken(JsonElement root, string name)
    {
        if (TokenizerJson.Optional(root, name) is not { } v) return null;
        if (v.ValueKind == JsonValueKind.String) return v.GetString();
        if (v.ValueKind == JsonValueKind.Object) return TokenizerJson.String(v, "content", $"$.{name}");
        throw new TokenizerLoadException($"'$.{name}' must be a string or an object with \"content\", found {v.ValueKind}.");
    }

    private static bool? OptionalBool(JsonElement root, string name) =>
        TokenizerJson.Optional(root, name) is null ? null : TokenizerJson.Bool(root, name, "$", false);

    private static long? MaxLength(JsonElement root)
    {
        if (TokenizerJson.Optional(root, "model_max_length") is not { } v) return null;
        if (v.ValueKind != JsonValueKind.Number)
            throw new TokenizerLoadException($"'$.model_max_length' must be a number, found {v.ValueKind}.");
        // int(1e30) does not fit in a long: that is the "no limit" sentinel.
        return v.TryGetInt64(out var n) && n > 0 ? n : null;
    }

    private static (string? Default, IReadOnlyDictionary<string, string> Named) ParseChatTemplates(JsonElement? json)
    {
        var named = new Dictionary<string, string>(StringComparer.Ordinal);
        if (json is not { } v) return (null, named);
        if (v.ValueKind == JsonValueKind.String) return (v.GetString(), named);
        if (v.ValueKind != JsonValueKind.Array)
            throw new TokenizerLoadException($"'$.chat_template' must be a string or a list of {{name, template}}, found {v.ValueKind}.");
        int i = 0;
        foreach (var entry in v.EnumerateArray())
        {
            var p = $"$.chat_template[{i++}]";
            TokenizerJson.Object(entry, p);
            named[TokenizerJson.String(entry, "name", p)] = TokenizerJson.String(entry, "template", p);
        }
        return (named.GetValueOrDefault("default"), named);
    }
}
