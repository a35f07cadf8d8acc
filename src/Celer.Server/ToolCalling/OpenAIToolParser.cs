namespace Celer.Server.ToolCalling;

/// <summary>
/// vLLM's <c>openai</c> parser, for gpt-oss, which writes the harmony format: a call is a message to a function,
/// <c>&lt;|start|&gt;assistant&lt;|channel|&gt;commentary to=functions.get_weather &lt;|constrain|&gt;json&lt;|message|&gt;{"city": "Paris"}&lt;|call|&gt;</c>
/// (the recipient may also come before the channel, and the content type may be missing or a bare <c>json</c>). The
/// <c>final</c> channel and <c>commentary</c> without a recipient (a preamble shown to the user before calls) are
/// content; <c>analysis</c> is reasoning, which is <c>--reasoning-parser openai_gptoss</c>'s to return and not content.
/// The markers are special tokens, so a request offered tools decodes with special tokens kept.
/// </summary>
internal sealed class OpenAIToolParser : IToolParser
{
    public string Name => ToolParserRegistry.OpenAI;
    public bool KeepsSpecialTokens => true;
    public string NewToolCallId() => ToolCallIds.Random();
    public ToolCallExtractor CreateExtractor(ToolCallSink sink, ToolCallContext context) => new HarmonyToolCallExtractor(sink);
}
