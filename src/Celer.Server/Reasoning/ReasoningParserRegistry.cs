using Celer.Tokenization;

namespace Celer.Server.Reasoning;

/// <summary>The reasoning parsers <c>--reasoning-parser</c> accepts, by vLLM's names.</summary>
public static class ReasoningParserRegistry
{
    public const string DeepSeekR1 = "deepseek_r1";
    public const string Qwen3 = "qwen3";
    public const string OpenAIGptOss = "openai_gptoss";

    public static IReadOnlyList<string> Names { get; } = [DeepSeekR1, OpenAIGptOss, Qwen3];

    /// <summary>Refuses a name that is not a known parser, listing the known ones (checked before the model loads).</summary>
    public static void CheckName(string name)
    {
        if (!Names.Contains(name, StringComparer.Ordinal))
            throw new ArgumentException($"--reasoning-parser '{name}' is not a known reasoning parser; the known ones are: {string.Join(", ", Names)}.");
    }

    /// <summary>The parser for the served model; refused when its tokenizer lacks the parser's markers.</summary>
    public static IReasoningParser Create(string name, Tokenizer tokenizer)
    {
        CheckName(name);
        return name switch
        {
            DeepSeekR1 => new DeepSeekR1ReasoningParser(tokenizer),
            OpenAIGptOss => new GptOssReasoningParser(tokenizer),
            _ => new Qwen3ReasoningParser(tokenizer),
        };
    }
}
