using Celer.Tokenization;

namespace Celer.Server.ToolCalling;

/// <summary>The tool-call parsers <c>--tool-call-parser</c> accepts, by vLLM's names.</summary>
public static class ToolParserRegistry
{
    public const string Hermes = "hermes";
    public const string Llama3Json = "llama3_json";
    public const string Mistral = "mistral";
    public const string Qwen3Xml = "qwen3_xml";
    public const string Qwen3Coder = "qwen3_coder";
    public const string Pythonic = "pythonic";
    public const string OpenAI = "openai";

    public static IReadOnlyList<string> Names { get; } = [Hermes, Llama3Json, Mistral, OpenAI, Pythonic, Qwen3Coder, Qwen3Xml];

    /// <summary>vLLM's startup checks of the two flags, before the model loads.</summary>
    public static void CheckOptions(bool enableAutoToolChoice, string? toolCallParser)
    {
        if (enableAutoToolChoice && toolCallParser is null)
            throw new ArgumentException("--enable-auto-tool-choice requires --tool-call-parser.");
        if (toolCallParser is not null && !Names.Contains(toolCallParser, StringComparer.Ordinal))
            throw new ArgumentException($"--tool-call-parser '{toolCallParser}' is not a known tool call parser; the known ones are: {string.Join(", ", Names)}.");
    }

    /// <summary>The parser for the served model; Mistral's and openai's are refused when the tokenizer lacks their marker token (<c>[TOOL_CALLS]</c>, <c>&lt;|message|&gt;</c>).</summary>
    internal static IToolParser Create(string name, Tokenizer tokenizer)
    {
        CheckOptions(false, name);
        switch (name)
        {
            case Hermes:
                return new HermesToolParser();
            case Llama3Json:
                return new Llama3JsonToolParser();
            case Mistral:
                if (tokenizer.TokenToId(MistralToolParser.Marker) is null)
                    throw new ArgumentException($"--tool-call-parser mistral: the model's tokenizer has no '{MistralToolParser.Marker}' token (vLLM refuses the parser likewise): this model does not write Mistral's tool calls.");
                return new MistralToolParser();
            case OpenAI:
                if (tokenizer.TokenToId(HarmonyMarkers.Message) is null)
                    throw new ArgumentException($"--tool-call-parser openai: the model's tokenizer has no '{HarmonyMarkers.Message}' token: this model does not write gpt-oss's harmony format.");
                return new OpenAIToolParser();
            case Pythonic:
                return new PythonicToolParser();
            default:
                return new Qwen3XmlToolParser(name);
        }
    }
}
