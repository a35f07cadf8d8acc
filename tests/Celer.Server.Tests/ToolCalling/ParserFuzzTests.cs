using System.Text;
using System.Text.Json.Nodes;
using Celer.Server.Reasoning;
using Celer.Server.Tests.Reasoning;
using Celer.Server.ToolCalling;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>
/// Seeded random outputs stitched from the formats' own pieces (markers, JSON, Python, stray text): no parser throws;
/// whenever the whole output reads as calls, every way of streaming it reads the same calls and content; and a stream
/// that sent no call loses no text.
/// </summary>
public sealed class ParserFuzzTests
{
    private static readonly string[] Pieces =
    [
        "<tool_call>", "</tool_call>", "\n", " ", "{", "}", "[", "]", "\"name\"", "\"arguments\"", "\"parameters\"", ": ", ":",
        ", ", ",", "\"get_weather\"", "\"f\"", "{\"city\": \"Paris\"}", "{}", "1", "-2.5", "true", "null", "\"x\\\"y\"", "text",
        "Sure.", "<think>", "</think>", "<thi", "</tool_", "[TOOL_CALLS]", "[ARGS]", "get_time", "<function=f>", "<function=get_weather>",
        "<parameter=city>", "<parameter=days>", "</parameter>", "</function>", "f(", "a=", "b='x'", ")", "'q'", "True", ";",
        "<|python_tag|>", "<|python_start|>", "<|python_end|>", "é", "\"",
        "<|start|>", "<|channel|>", "<|message|>", "<|end|>", "<|call|>", "<|constrain|>", "assistant", "analysis", "final",
        "commentary", " to=functions.get_weather", "to=functions.f", " json",
    ];

    private static readonly JsonArray Tools = (JsonArray)JsonNode.Parse("""
        [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}}}}]
        """)!;

    public static TheoryData<string> Parsers => [.. ToolParserRegistry.Names, "required", "qwen3+hermes", "openai_gptoss+openai"];

    private static ChatOutputPlan PlanFor(string name) => name switch
    {
        "required" => ParserHarness.Plan(choice: new ToolChoice(ToolChoiceMode.Required)),
        "qwen3+hermes" => ParserHarness.Plan(new HermesToolParser(), reasoning: ReasoningParserRegistry.Create("qwen3", ReasoningParserTests.ThinkTokenizer())),
        "openai_gptoss+openai" => ParserHarness.Plan(HarmonyParser(), reasoning: ReasoningParserRegistry.Create("openai_gptoss", OpenAIToolParserTests.HarmonyTokenizer()), tools: Tools),
        "openai" => ParserHarness.Plan(HarmonyParser(), tools: Tools),
        _ => ParserHarness.Plan(ToolParserRegistry.Create(name, MarkerTokenizer()), tools: Tools),
    };

    private static IToolParser HarmonyParser() => ToolParserRegistry.Create(ToolParserRegistry.OpenAI, OpenAIToolParserTests.HarmonyTokenizer());

    private static bool IsHarmony(string parser) => parser is "openai" or "openai_gptoss+openai";

    private static Celer.Tokenization.Tokenizer MarkerTokenizer() => Celer.Tokenization.Tokenizer.FromJson("""
        {"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []},
         "added_tokens": [{"id": 1, "content": "[TOOL_CALLS]", "special": true, "normalized": false}]}
        """);

    private static readonly string[] Arguments = ["{}", "{\"city\": \"Paris\"}", "{\"a\":[1,2,{\"b\":null}],\"s\":\"x\\\"y }\"}", "{ \"n\" : -2.5e3 }"];
    private static readonly string[] Texts = ["", "", "Sure.", "Let me check.\n", "\n", "a < b"];

    /// <summary>A well-formed output of the format: text and one to three calls.</summary>
    private static string Sample(string parser, Random random)
    {
        string Pick(string[] from) => from[random.Next(from.Length)];
        var names = new[] { "get_weather", "f", "get_time" };
        int calls = random.Next(1, 4);
        var parts = Enumerable.Range(0, calls).Select(_ => (Name: Pick(names), Args: Pick(Arguments))).ToList();
        return parser switch
        {
            "hermes" or "qwen3+hermes" => (parser == "qwen3+hermes" ? "<think>" + Pick(Texts) + "</think>" : "") + Pick(Texts)
                + string.Concat(parts.Select(p => $"<tool_call>\n{{\"name\": \"{p.Name}\", \"arguments\": {p.Args}}}\n</tool_call>\n")),
            "llama3_json" => (random.Next(2) == 0 ? "<|python_tag|>" : "") + string.Join("; ", parts.Select(p => $"{{\"name\": \"{p.Name}\", \"parameters\": {p.Args}}}")),
            "mistral" => Pick(Texts) + (random.Next(2) == 0
                ? "[TOOL_CALLS] [" + string.Join(", ", parts.Select(p => $"{{\"name\": \"{p.Name}\", \"arguments\": {p.Args}}}")) + "]"
                : string.Concat(parts.Select(p => $"[TOOL_CALLS]{p.Name}[ARGS]{p.Args}"))),
            "pythonic" => "[" + string.Join(", ", parts.Select(p => $"{p.Name}(city='Paris', days={random.Next(-5, 50)}, ok=True)")) + "]",
            "required" => "[" + string.Join(", ", parts.Select(p => $"{{\"name\": \"{p.Name}\", \"parameters\": {p.Args}}}")) + "]",
            "openai" or "openai_gptoss+openai" => HarmonySample(parts, random),
            _ => Pick(Texts) + string.Concat(parts.Select(p =>
                $"<tool_call>\n<function={p.Name}>\n<parameter=city>\n{Pick(Texts)}x\n</parameter>\n<parameter=days>\n{random.Next(0, 9)}\n</parameter>\n</function>\n</tool_call>\n")),
        };
    }

    /// <summary>
    /// gpt-oss's output after the template's <c>&lt;|start|&gt;assistant</c>: maybe an analysis message, maybe a preamble,
    /// then the calls in the header variants it writes, the last one usually without its end-of-sequence <c>&lt;|call|&gt;</c>.
    /// </summary>
    private static string HarmonySample(List<(string Name, string Args)> calls, Random random)
    {
        var messages = new List<string>();
        if (random.Next(2) == 0)
            messages.Add("<|channel|>analysis<|message|>" + Texts[random.Next(Texts.Length)] + "<|end|>");
        if (random.Next(3) == 0)
            messages.Add("<|channel|>commentary<|message|>Let me check.<|end|>");
        foreach (var (name, args) in calls)
        {
            var header = random.Next(3) switch
            {
                0 => $"<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>",
                1 => $" to=functions.{name}<|channel|>commentary json<|message|>",
                _ => $"<|channel|>commentary to=functions.{name}<|message|>",
            };
            messages.Add(header + args + "<|call|>");
        }
        if (random.Next(2) == 0)
            messages[^1] = messages[^1][..^"<|call|>".Length];
        // The first message's <|start|>assistant is the end of the prompt.
        return messages[0] + string.Concat(messages.Skip(1).Select(m => "<|start|>assistant" + m));
    }

    [Theory]
    [MemberData(nameof(Parsers))]
    public void Random_outputs_never_throw_and_stream_as_they_read_whole(string parser)
    {
        var plan = PlanFor(parser);
        var random = new Random(parser.Length * 7919);
        int withCalls = 0, without = 0;
        for (int round = 0; round < 1500; round++)
        {
            // Half well-formed, half of those broken by an inserted piece, a cut or a deleted stretch; some pure noise.
            var output = round % 4 == 3
                ? string.Concat(Enumerable.Range(0, random.Next(1, 14)).Select(_ => Pieces[random.Next(Pieces.Length)]))
                : Sample(parser, random);
            if (round % 2 == 1 && output.Length > 1)
            {
                int at = random.Next(output.Length);
                output = random.Next(3) switch
                {
                    0 => output.Insert(at, Pieces[random.Next(Pieces.Length)]),
                    1 => output[..at],
                    _ => output.Remove(at, random.Next(1, Math.Min(6, output.Length - at) + 1)),
                };
            }

            var whole = ParserHarness.Whole(plan, output);
            var streamed = ParserHarness.Stream(plan, output.Select(c => c.ToString()).ToArray());
            int cut = random.Next(0, output.Length + 1);
            var halves = ParserHarness.Stream(plan, [output[..cut], output[cut..]]);
            foreach (var stream in new[] { streamed, halves })
            {
                if (whole.ToolCalls is { } calls)
                {
                    withCalls++;
                    Assert.True((whole.Content ?? "") == stream.Content, $"content of '{output}': '{stream.Content}' streamed, '{whole.Content}' whole");
                    Assert.True((whole.Reasoning ?? "") == stream.Reasoning, $"reasoning of '{output}': '{stream.Reasoning}' streamed");
                    Assert.Equal(calls.Select(c => (c.Function.Name, c.Function.Arguments)), stream.Calls.Select(c => (c.Function.Name, c.Function.Arguments)));
                    // vLLM's openai parser keeps a harmony call whose arguments are not JSON, with its text as arguments.
                    if (!IsHarmony(parser))
                    {
                        foreach (var call in calls)
                            Assert.NotNull(JsonNode.Parse(call.Function.Arguments));
                    }
                }
                else if (stream.Calls.Count == 0 && IsHarmony(parser))
                {
                    // harmony hides text from the user (its headers, and the analysis channel when no reasoning parser took
                    // it): the stream loses it on purpose. The finished answer is what the stream sent or, where the
                    // format broke, the text as written (after the reasoning parser's split).
                    without++;
                    Assert.True((whole.Reasoning ?? "") == stream.Reasoning, $"reasoning of '{output}': '{stream.Reasoning}' streamed");
                    var asWritten = plan.Reasoning is { } reasoning ? reasoning.Extract(output).Content ?? "" : output;
                    Assert.True((whole.Content ?? "") == stream.Content || (whole.Content ?? "") == asWritten,
                        $"content of '{output}': '{stream.Content}' streamed, '{whole.Content}' whole");
                }
                else if (stream.Calls.Count == 0)
                {
                    without++;
                    Assert.True((whole.Reasoning ?? "") + (whole.Content ?? "") == stream.Reasoning + stream.Content, $"text of '{output}' lost: '{stream.Content}'");
                }
            }
        }
        // Both kinds come up often enough for the comparisons to mean something.
        Assert.True(withCalls > 500 && without > 200, $"{withCalls} streams of outputs with calls, {without} without");
    }
}
