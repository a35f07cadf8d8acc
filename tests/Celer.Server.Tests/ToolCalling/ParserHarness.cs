using System.Text;
using System.Text.Json.Nodes;
using Celer.Server.Protocol;
using Celer.Server.Reasoning;
using Celer.Server.ToolCalling;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>What a client assembles from a stream: the text of each channel and each call by index.</summary>
internal sealed record StreamedChoice(string Reasoning, string Content, IReadOnlyList<ChatToolCall> Calls, bool SentToolCalls);

/// <summary>Runs one choice's output through <see cref="ChoiceOutputParser"/> whole and in pieces, as the chat service does.</summary>
internal static class ParserHarness
{
    public static ChatOutputPlan Plan(IToolParser? parser = null, ToolChoice? choice = null, IReasoningParser? reasoning = null,
        JsonArray? tools = null, bool parallel = true, bool includeReasoning = true) =>
        new(reasoning, includeReasoning, choice ?? (parser is null ? ToolChoice.None : new ToolChoice(ToolChoiceMode.Auto)), parser,
            new ToolCallContext(tools), parallel);

    /// <summary>The non-streamed answer.</summary>
    public static ChoiceResult Whole(ChatOutputPlan plan, string text)
    {
        var parser = new ChoiceOutputParser(plan);
        parser.Push(text, final: true);
        return parser.Result();
    }

    /// <summary>
    /// The streamed answer from these pieces, checked against OpenAI's delta rules on the way: a call's first delta has
    /// its id, type and name; the later ones only its index and an arguments fragment; indexes come in order.
    /// </summary>
    public static StreamedChoice Stream(ChatOutputPlan plan, IReadOnlyList<string> pieces)
    {
        var parser = new ChoiceOutputParser(plan);
        var reasoning = new StringBuilder();
        var content = new StringBuilder();
        var ids = new List<string>();
        var names = new List<string>();
        var arguments = new List<StringBuilder>();
        for (int i = 0; i < pieces.Count; i++)
        {
            var delta = parser.Push(pieces[i], final: i == pieces.Count - 1);
            reasoning.Append(delta.Reasoning);
            content.Append(delta.Content);
            foreach (var call in delta.ToolCalls ?? [])
            {
                if (call.Index == ids.Count)
                {
                    Assert.False(string.IsNullOrEmpty(call.Id));
                    Assert.Equal("function", call.Type);
                    Assert.False(string.IsNullOrEmpty(call.Function.Name));
                    Assert.NotNull(call.Function.Arguments);
                    ids.Add(call.Id!);
                    names.Add(call.Function.Name!);
                    arguments.Add(new StringBuilder(call.Function.Arguments));
                }
                else
                {
                    Assert.InRange(call.Index, 0, ids.Count - 1);
                    Assert.Null(call.Id);
                    Assert.Null(call.Type);
                    Assert.Null(call.Function.Name);
                    Assert.False(string.IsNullOrEmpty(call.Function.Arguments));
                    arguments[call.Index].Append(call.Function.Arguments);
                }
            }
        }
        var calls = ids.Select((id, i) => new ChatToolCall(id, new ChatFunctionCall(names[i], arguments[i].ToString()))).ToList();
        return new StreamedChoice(reasoning.ToString(), content.ToString(), calls, parser.SentToolCalls);
    }

    /// <summary>The text in one piece, in two pieces split at every position, and one character at a time.</summary>
    public static IEnumerable<string[]> Splits(string text)
    {
        yield return [text];
        for (int i = 1; i < text.Length; i++)
            yield return [text[..i], text[i..]];
        yield return text.Select(c => c.ToString()).ToArray();
        // Three pieces at seeded random positions, as a detokenizer would cut them.
        var random = new Random(text.Length);
        for (int round = 0; round < 20 && text.Length > 2; round++)
        {
            int a = random.Next(1, text.Length - 1);
            int b = random.Next(a + 1, text.Length);
            yield return [text[..a], text[a..b], text[b..]];
        }
    }

    /// <summary>Every way of streaming <paramref name="text"/> gives the non-streamed answer (for output that keeps its format).</summary>
    public static ChoiceResult AssertStreamingMatchesWhole(ChatOutputPlan plan, string text)
    {
        var whole = Whole(plan, text);
        foreach (var pieces in Splits(text))
        {
            var streamed = Stream(plan, pieces);
            var where = $"split {string.Join(" | ", pieces.Select(p => p.Replace("\n", "\\n", StringComparison.Ordinal)))}";
            Assert.True((whole.Reasoning ?? "") == streamed.Reasoning, $"reasoning differs at {where}: '{streamed.Reasoning}'");
            Assert.True((whole.Content ?? "") == streamed.Content, $"content differs at {where}: '{streamed.Content}'");
            var expected = whole.ToolCalls ?? [];
            Assert.True(expected.Count == streamed.Calls.Count, $"{streamed.Calls.Count} calls instead of {expected.Count} at {where}");
            for (int i = 0; i < expected.Count; i++)
            {
                Assert.Equal(expected[i].Function.Name, streamed.Calls[i].Function.Name);
                Assert.True(expected[i].Function.Arguments == streamed.Calls[i].Function.Arguments,
                    $"arguments of call {i} differ at {where}: '{streamed.Calls[i].Function.Arguments}'");
            }
            Assert.Equal(expected.Count > 0, streamed.SentToolCalls);
        }
        return whole;
    }

    /// <summary>Output that breaks the format or has no call: the non-streamed answer is the whole text as content.</summary>
    public static void AssertContentAsWritten(ChatOutputPlan plan, string text)
    {
        var result = Whole(plan, text);
        Assert.Null(result.ToolCalls);
        Assert.Equal(text, result.Content);
    }

    /// <summary>One call's name and arguments, parsed back to check the arguments are a JSON string of the right object.</summary>
    public static void AssertCall(ChatToolCall call, string name, string arguments)
    {
        Assert.Equal(name, call.Function.Name);
        Assert.Equal(arguments, call.Function.Arguments);
        Assert.Equal("function", call.Type);
        Assert.NotNull(JsonNode.Parse(call.Function.Arguments));
    }
}
