using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.ChatTemplates;
using Celer.Engine;
using Celer.Engine.Output;
using Celer.Server.Serving;
using Celer.Server.ToolCalling;
using Celer.TestSupport;
using Celer.Tokenization;

namespace Celer.Server.Tests.ToolCalling;

/// <summary>
/// Tool calling through the real chat templates of three model families (tests/fixtures/chat_templates) with real
/// tokenizers (tools/fetch-test-assets.sh), the parser made as the server makes it (<see cref="ChatParsers.Create"/>):
/// Llama 3.1 with <c>llama3_json</c>, Qwen2.5 (Hermes format) with <c>hermes</c>, Mistral 7B v0.3 with <c>mistral</c>.
/// For each, the conversation is rendered through <see cref="ChatPromptBuilder"/> as the server renders it; the prompt is
/// compared in full with what Jinja2 renders under transformers' settings (so the tools are where the template puts
/// them); the assistant's tool calls, rendered by the template itself after that prompt, are the text the model family
/// is trained to write, and the parser must read the same calls out of it whole, in every split, and as the engine hands
/// it out token by token (tokenized, then detokenized with the sampling parameters the chat service gives the request).
/// The calls read back are sent as the next turn's assistant message and must render as the original did.
/// <para>Tokenizers: Llama 3.1 has Llama 3's vocabulary (the <c>llama3</c> asset). Qwen2.5 shares Qwen3's vocabulary and
/// its <c>&lt;tool_call&gt;</c> tokens (the <c>qwen3</c> asset). No Mistral tokenizer.json is published where the assets
/// come from, so Mistral's is Llama 2's SentencePiece vocabulary (the pipeline Mistral's is built on) with Mistral v0.3's
/// control tokens (<c>[INST]</c>, <c>[TOOL_CALLS]</c>, …) added as special tokens, loaded as a Mistral model's is.</para>
/// </summary>
public sealed class RealTemplateToolCallTests
{
    private const string WeatherTool = """{"type": "function", "function": {"name": "get_weather", "description": "Current weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}""";
    private const string TripTool = """{"type": "function", "function": {"name": "book_trip", "description": "Book a trip for some travellers", "parameters": {"type": "object", "properties": {"route": {"type": "object", "properties": {"from": {"type": "string"}, "to": {"type": "string"}}, "required": ["from", "to"]}, "travellers": {"type": "array", "items": {"type": "object"}}, "flexible": {"type": "boolean"}, "note": {"type": "string"}}, "required": ["route"]}}}""";
    private const string Tools = "[" + WeatherTool + ", " + TripTool + "]";

    private const string User = "Weather in Zürich, then book me a trip.";

    /// <summary>The arguments as Python's <c>json.dumps(ensure_ascii=False)</c> writes them: what the templates render and vLLM returns.</summary>
    private const string WeatherArguments = """{"city": "Zürich", "unit": "celsius"}""";

    /// <summary>Nested objects and arrays, null, a boolean, escaped quotes and newline, CJK and an emoji, and the characters the formats use as delimiters.</summary>
    private const string TripArguments = """{"route": {"from": "東京", "to": "São Paulo"}, "travellers": [{"name": "Zoë", "age": 7, "seat": null}], "flexible": true, "note": "say \"hi\" 👋\nthen {leave}; [ok]"}""";

    /// <summary>Llama 3.1's template writes each tool as <c>tojson(indent=4)</c>.</summary>
    private const string WeatherToolIndented = """
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather of a city",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {
                            "type": "string"
                        },
                        "unit": {
                            "type": "string",
                            "enum": [
                                "celsius",
                                "fahrenheit"
                            ]
                        }
                    },
                    "required": [
                        "city"
                    ]
                }
            }
        }
        """;

    private const string TripToolIndented = """
        {
            "type": "function",
            "function": {
                "name": "book_trip",
                "description": "Book a trip for some travellers",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "route": {
                            "type": "object",
                            "properties": {
                                "from": {
                                    "type": "string"
                                },
                                "to": {
                                    "type": "string"
                                }
                            },
                            "required": [
                                "from",
                                "to"
                            ]
                        },
                        "travellers": {
                            "type": "array",
                            "items": {
                                "type": "object"
                            }
                        },
                        "flexible": {
                            "type": "boolean"
                        },
                        "note": {
                            "type": "string"
                        }
                    },
                    "required": [
                        "route"
                    ]
                }
            }
        }
        """;

    private static readonly (string Name, string Arguments)[] BothCalls = [("get_weather", WeatherArguments), ("book_trip", TripArguments)];

    // ---------------------------------------------------------------- Llama 3.1, llama3_json

    [Fact]
    public void Llama_3_1_puts_the_tools_in_the_first_user_turn_and_its_json_call_is_read()
    {
        var llama = Family.Llama31();
        var turn = llama.Turn(null, [("get_weather", WeatherArguments)]);

        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nEnvironment: ipython\nCutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|>"
            + "<|start_header_id|>user<|end_header_id|>\n\nGiven the following functions, please respond with a JSON for a function call with its proper arguments that best answers the given prompt.\n\n"
            + "Respond in the format {\"name\": function name, \"parameters\": dictionary of argument name and its value}.Do not use variables.\n\n"
            + WeatherToolIndented + "\n\n" + TripToolIndented + "\n\n" + User + "<|eot_id|>"
            + "<|start_header_id|>assistant<|end_header_id|>\n\n",
            turn.Prompt);
        Assert.Equal("{\"name\": \"get_weather\", \"parameters\": " + WeatherArguments + "}", turn.Reply);

        llama.AssertReadsCalls(turn, null, [("get_weather", WeatherArguments)]);
    }

    [Fact]
    public void Llama_3_1_nested_and_unicode_arguments_are_read()
    {
        var llama = Family.Llama31();
        var turn = llama.Turn(null, [("book_trip", TripArguments)]);
        Assert.Equal("{\"name\": \"book_trip\", \"parameters\": " + TripArguments + "}", turn.Reply);
        llama.AssertReadsCalls(turn, null, [("book_trip", TripArguments)]);
    }

    [Fact]
    public void Llama_3_1_writes_one_call_per_turn()
    {
        // The format has no parallel calls: the template refuses a turn with two.
        var e = Assert.ThrowsAny<Exception>(() => Family.Llama31().Turn(null, BothCalls));
        Assert.Contains("This model only supports single tool-calls at once!", e.Message, StringComparison.Ordinal);
    }

    // ---------------------------------------------------------------- Qwen2.5 (Hermes format), hermes

    [Theory]
    [InlineData(null)]
    [InlineData("Let me check both.")]
    public void Qwen_2_5_lists_the_tools_in_the_system_turn_and_its_tool_call_blocks_are_read(string? content)
    {
        var qwen = Family.Qwen25();
        var turn = qwen.Turn(content, BothCalls);

        Assert.Equal(
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.\n\n# Tools\n\n"
            + "You may call one or more functions to assist with the user query.\n\n"
            + "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
            + WeatherTool + "\n" + TripTool + "\n</tools>\n\n"
            + "For each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\n"
            + "<tool_call>\n{\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call><|im_end|>\n"
            + "<|im_start|>user\n" + User + "<|im_end|>\n<|im_start|>assistant\n",
            turn.Prompt);
        Assert.Equal(
            (content is null ? "" : content + "\n")
            + "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": " + WeatherArguments + "}\n</tool_call>\n"
            + "<tool_call>\n{\"name\": \"book_trip\", \"arguments\": " + TripArguments + "}\n</tool_call>",
            turn.Reply);

        qwen.AssertReadsCalls(turn, content, BothCalls);
    }

    [Fact]
    public void Qwen_2_5_one_nested_call_is_read()
    {
        var qwen = Family.Qwen25();
        var turn = qwen.Turn(null, [("book_trip", TripArguments)]);
        qwen.AssertReadsCalls(turn, null, [("book_trip", TripArguments)]);
    }

    // ---------------------------------------------------------------- Mistral 7B v0.3, mistral

    [Fact]
    public void Mistral_v0_3_lists_the_tools_before_the_last_user_turn_and_its_tool_calls_array_is_read()
    {
        var mistral = Family.MistralV03();
        var turn = mistral.Turn(null, BothCalls);

        Assert.Equal("<s>[AVAILABLE_TOOLS] [" + WeatherTool + ", " + TripTool + "][/AVAILABLE_TOOLS][INST] " + User + "[/INST]", turn.Prompt);
        // The template writes each call's id (nine characters) after its arguments.
        Assert.Equal(
            "[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": " + WeatherArguments + ", \"id\": \"call00001\"}, "
            + "{\"name\": \"book_trip\", \"arguments\": " + TripArguments + ", \"id\": \"call00002\"}]",
            turn.Reply);

        mistral.AssertReadsCalls(turn, null, BothCalls);
    }

    [Fact]
    public void Mistral_v0_3_one_nested_call_is_read()
    {
        var mistral = Family.MistralV03();
        var turn = mistral.Turn(null, [("book_trip", TripArguments)]);
        mistral.AssertReadsCalls(turn, null, [("book_trip", TripArguments)]);
    }

    /// <summary>One rendered turn: the prompt up to the assistant's reply, and the reply as the template writes it without the token that ends it.</summary>
    private sealed record Turn(string Prompt, string Reply, JsonObject UserMessage, JsonObject AssistantMessage);

    /// <summary>A model family as the server serves it: tokenizer, chat template, tool-call parser.</summary>
    private sealed class Family
    {
        private readonly ChatTemplate _template;
        private readonly TokenizerConfig _config;
        private readonly string[] _specialTokenTexts;

        /// <summary>The special token that ends the assistant's turn (the engine stops on it), and what the template writes after it.</summary>
        private readonly string _endOfTurn;
        private readonly string _afterEndOfTurn;

        private Family(string template, Tokenizer tokenizer, TokenizerConfig config, string parser, string endOfTurn, string afterEndOfTurn)
        {
            _template = ChatTemplate.Parse(File.ReadAllText(Path.Combine(RepoPaths.Fixtures, "chat_templates", template)));
            Tokenizer = tokenizer;
            _config = config;
            _specialTokenTexts = ServingModel.SpecialTokenTextsOf(tokenizer);
            // As the server makes it from --enable-auto-tool-choice --tool-call-parser NAME (the model's tokenizer checked).
            Parser = ChatParsers.Create(new ServerOptions { EnableAutoToolChoice = true, ToolCallParser = parser }, tokenizer).Tools!;
            Assert.Equal(parser, Parser.Name);
            _endOfTurn = endOfTurn;
            _afterEndOfTurn = afterEndOfTurn;
        }

        public Tokenizer Tokenizer { get; }

        public IToolParser Parser { get; }

        public static Family Llama31()
        {
            var dir = RepoPaths.TestTokenizer("llama3");
            var config = TokenizerConfig.Load(dir);
            return new Family("llama-3.1.jinja", Tokenizer.FromFile(Path.Combine(dir, "tokenizer.json"), config, "llama"), config,
                ToolParserRegistry.Llama3Json, "<|eot_id|>", "");
        }

        public static Family Qwen25()
        {
            var dir = RepoPaths.TestTokenizer("qwen3");
            var config = TokenizerConfig.Load(dir);
            return new Family("qwen2.5.jinja", Tokenizer.FromFile(Path.Combine(dir, "tokenizer.json"), config, "qwen2"), config,
                ToolParserRegistry.Hermes, "<|im_end|>", "\n");
        }

        public static Family MistralV03()
        {
            var dir = RepoPaths.TestTokenizer("llama2");
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(dir, "tokenizer.json")))!;
            var added = json["added_tokens"]!.AsArray();
            var id = json["model"]!["vocab"]!.AsObject().Count;
            foreach (var control in new[] { "[INST]", "[/INST]", "[TOOL_CALLS]", "[AVAILABLE_TOOLS]", "[/AVAILABLE_TOOLS]", "[TOOL_RESULTS]", "[/TOOL_RESULTS]" })
            {
                added.Add(new JsonObject
                {
                    ["id"] = id++, ["content"] = control, ["single_word"] = false, ["lstrip"] = false,
                    ["rstrip"] = false, ["normalized"] = false, ["special"] = true,
                });
            }
            var config = TokenizerConfig.Load(dir);
            return new Family("mistral-v0.3.jinja", Tokenizer.FromJson(json.ToJsonString(), config, "mistral"), config,
                ToolParserRegistry.Mistral, "</s>", "");
        }

        /// <summary>The chat template's render of these messages, as the chat service renders a request's.</summary>
        public string Render(JsonArray messages, bool addGenerationPrompt)
        {
            using var document = JsonDocument.Parse(messages.ToJsonString());
            var request = new ChatRenderRequest(document.RootElement.Clone(), JsonNode.Parse(Tools)!.AsArray(), null,
                addGenerationPrompt, false, null, null);
            return ChatPromptBuilder.Render(request, _config, _specialTokenTexts, _ => _template).Text;
        }

        /// <summary>
        /// The user's question, then an assistant message with these calls (arguments as the JSON strings OpenAI clients
        /// send, ids of nine characters as Mistral's template wants): the prompt is the render of the question with the
        /// generation prompt, the reply what the render of both adds to it.
        /// </summary>
        public Turn Turn(string? content, (string Name, string Arguments)[] calls)
        {
            var user = new JsonObject { ["role"] = "user", ["content"] = User };
            var assistant = AssistantMessage(content, calls.Select((c, i) => ($"call0000{i + 1}", c.Name, c.Arguments)));
            var prompt = Render([user.DeepClone()], addGenerationPrompt: true);
            var full = Render([user.DeepClone(), assistant.DeepClone()], addGenerationPrompt: false);

            Assert.StartsWith(prompt, full, StringComparison.Ordinal);
            var reply = full[prompt.Length..];
            Assert.EndsWith(_endOfTurn + _afterEndOfTurn, reply, StringComparison.Ordinal);
            return new Turn(prompt, reply[..^(_endOfTurn.Length + _afterEndOfTurn.Length)], user, assistant);
        }

        public static JsonObject AssistantMessage(string? content, IEnumerable<(string Id, string Name, string Arguments)> calls) => new()
        {
            ["role"] = "assistant",
            ["content"] = content,
            ["tool_calls"] = new JsonArray(calls.Select(c => (JsonNode)new JsonObject
            {
                ["id"] = c.Id,
                ["type"] = "function",
                ["function"] = new JsonObject { ["name"] = c.Name, ["arguments"] = c.Arguments },
            }).ToArray()),
        };

        /// <summary>
        /// The reply as the engine hands it out: the render of prompt, reply and end of turn tokenized, the prompt's
        /// tokens split off, and the rest detokenized one token at a time with the chat service's sampling parameters
        /// for a request offered tools (special tokens kept for a parser whose marker is one), the end of turn being the
        /// stop token. Each delta is one piece of the stream.
        /// </summary>
        public List<string> EngineDeltas(Turn turn)
        {
            var promptIds = Tokenizer.Encode(turn.Prompt, addSpecialTokens: false);
            var allIds = Tokenizer.Encode(turn.Prompt + turn.Reply + _endOfTurn, addSpecialTokens: false);
            Assert.Equal(promptIds, allIds[..promptIds.Length]);
            var outputIds = allIds[promptIds.Length..];
            Assert.Equal(Tokenizer.TokenToId(_endOfTurn), outputIds[^1]);
            Assert.True(Tokenizer.IsSpecialToken(outputIds[^1]));

            var sampling = new SamplingParams { SkipSpecialTokens = !Parser.KeepsSpecialTokens };
            var detokenizer = new SequenceDetokenizer(Tokenizer, promptIds, sampling);
            var deltas = new List<string>();
            for (int i = 0; i < outputIds.Length; i++)
            {
                bool last = i == outputIds.Length - 1;
                detokenizer.Update([outputIds[i]], stopTerminated: last);
                deltas.Add(detokenizer.NextTextDelta(finished: last));
            }
            return deltas;
        }

        /// <summary>
        /// The parser reads <paramref name="calls"/> (and the content, if any) out of the reply whole, in every split, and
        /// as the engine streams it; the calls read back, sent as the next turn's assistant message, render as the template
        /// rendered the original, and the tools' results after them render too.
        /// </summary>
        public void AssertReadsCalls(Turn turn, string? content, (string Name, string Arguments)[] calls)
        {
            var plan = ParserHarness.Plan(Parser, tools: JsonNode.Parse(Tools)!.AsArray());

            var whole = ParserHarness.AssertStreamingMatchesWhole(plan, turn.Reply);
            AssertCalls(whole.ToolCalls, calls);
            Assert.Equal(content, whole.Content?.Trim());

            var deltas = EngineDeltas(turn);
            var engineText = string.Concat(deltas);
            if (Parser.KeepsSpecialTokens)
            {
                // Mistral's marker is a special token kept in the text: the detokenizer puts a space on either side of it
                // (vLLM's spaces_between_special_tokens), and Hugging Face's SentencePiece normalizer reads the template's
                // " [" after it as two spaces. The text is the reply but for whitespace around the marker.
                Assert.Equal(Collapse(turn.Reply), Collapse(engineText));
            }
            else
            {
                Assert.Equal(turn.Reply, engineText);
            }
            var engineWhole = ParserHarness.AssertStreamingMatchesWhole(plan, engineText);
            AssertCalls(engineWhole.ToolCalls, calls);
            Assert.Equal(content, string.IsNullOrWhiteSpace(engineWhole.Content) ? null : engineWhole.Content.Trim());
            var streamed = ParserHarness.Stream(plan, deltas);
            Assert.True(streamed.SentToolCalls);
            AssertCalls(streamed.Calls, calls);
            Assert.Equal(content ?? "", streamed.Content.Trim());

            // The agent loop: the client sends the calls back as they came, with the tools' results.
            var echoed = AssistantMessage(content, whole.ToolCalls!.Select(c => (c.Id!, c.Function.Name!, c.Function.Arguments!)));
            var original = turn.AssistantMessage.DeepClone();
            for (int i = 0; i < calls.Length; i++)
                original["tool_calls"]![i]!["id"] = whole.ToolCalls![i].Id;
            Assert.Equal(
                Render([turn.UserMessage.DeepClone(), original], addGenerationPrompt: false),
                Render([turn.UserMessage.DeepClone(), echoed.DeepClone()], addGenerationPrompt: false));
            var loop = new JsonArray(turn.UserMessage.DeepClone(), echoed);
            foreach (var call in whole.ToolCalls!)
                loop.Add(new JsonObject { ["role"] = "tool", ["tool_call_id"] = call.Id, ["content"] = "ok" });
            var next = Render(loop, addGenerationPrompt: true);
            Assert.StartsWith(turn.Prompt, next, StringComparison.Ordinal);
        }

        private static string Collapse(string text) => System.Text.RegularExpressions.Regex.Replace(text, @"\s+", " ").Trim();

        private void AssertCalls(IReadOnlyList<Protocol.ChatToolCall>? actual, (string Name, string Arguments)[] expected)
        {
            Assert.NotNull(actual);
            Assert.Equal(expected.Length, actual.Count);
            for (int i = 0; i < expected.Length; i++)
            {
                ParserHarness.AssertCall(actual[i], expected[i].Name, expected[i].Arguments);
                if (Parser.Name == ToolParserRegistry.Mistral)
                    Assert.Matches("^[A-Za-z0-9]{9}$", actual[i].Id);
                else
                    Assert.StartsWith("chatcmpl-tool-", actual[i].Id, StringComparison.Ordinal);
            }
        }
    }
}
