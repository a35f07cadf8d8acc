using System.ClientModel;
using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Json.Schema;
using OpenAI;
using OpenAI.Chat;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// Structured outputs behind the real server: <c>response_format</c> through the official OpenAI .NET client (plain
/// and streamed), vLLM's <c>structured_outputs</c> and <c>guided_*</c> fields over HTTP on both endpoints, and the
/// 400s for constraints that cannot be compiled. Outputs are checked by independent means (JsonSchema.Net, .NET regex).
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class StructuredOutputsServerTests(ServerFixture server)
{
    private const string Schema = """
        {"type":"object","properties":{"city":{"type":"string","maxLength":10},"population":{"type":"integer","minimum":0,"maximum":99999},
         "capital":{"type":"boolean"}},"required":["city","population","capital"],"additionalProperties":false}
        """;

    private static readonly ChatMessage[] Conversation = [new UserChatMessage("Describe a city as JSON.")];

    private ChatClient Chat() =>
        new OpenAIClient(new ApiKeyCredential(ServerFixture.ApiKey), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "/v1") })
            .GetChatClient(ServerFixture.ModelName);

    private static ChatCompletionOptions SchemaOptions(float temperature) => new()
    {
        MaxOutputTokenCount = 150,
        Temperature = temperature,
        ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("city", BinaryData.FromString(Schema), jsonSchemaIsStrict: true),
    };

    // Whitespace between JSON tokens is free (vLLM's default), so a model may spend max_tokens on it: a cut output
    // must then be a prefix of a valid one, and a finished one must validate.
    private static void AssertValidOrPrefix(string text, ChatFinishReason? finish)
    {
        if (finish == ChatFinishReason.Stop)
        {
            using var document = JsonDocument.Parse(text);
            Assert.True(JsonSchema.FromText(Schema).Evaluate(document.RootElement).IsValid, text);
            return;
        }

        Assert.Equal(ChatFinishReason.Length, finish);
        var grammar = Grammars.GrammarAutomaton.Compile(Grammars.Json.JsonSchemaGrammar.Compile(JsonNode.Parse(Schema)!, new Grammars.Json.JsonGrammarOptions()));
        Assert.True(grammar.IsPrefix(System.Text.Encoding.UTF8.GetBytes(text)), text);
    }

    [Theory]
    [InlineData(0f)]
    [InlineData(1f)]
    public async Task Json_schema_response_format_through_the_openai_client(float temperature)
    {
        var completion = (await Chat().CompleteChatAsync(Conversation, SchemaOptions(temperature), TestContext.Current.CancellationToken)).Value;
        AssertValidOrPrefix(completion.Content[0].Text, completion.FinishReason);
    }

    [Fact]
    public async Task Streamed_json_schema_output_concatenates_to_the_same_text()
    {
        var options = SchemaOptions(0f);
        string whole = (await Chat().CompleteChatAsync(Conversation, options, TestContext.Current.CancellationToken)).Value.Content[0].Text;
        var streamed = new System.Text.StringBuilder();
        ChatFinishReason? finish = null;
        await foreach (var update in Chat().CompleteChatStreamingAsync(Conversation, options, TestContext.Current.CancellationToken))
        {
            foreach (var part in update.ContentUpdate)
            {
                streamed.Append(part.Text);
            }

            finish ??= update.FinishReason;
        }

        Assert.Equal(whole, streamed.ToString());
        AssertValidOrPrefix(streamed.ToString(), finish);
    }

    [Fact]
    public async Task Json_object_response_format_gives_an_object()
    {
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 120, Temperature = 0, ResponseFormat = ChatResponseFormat.CreateJsonObjectFormat() };
        var completion = (await Chat().CompleteChatAsync(Conversation, options, TestContext.Current.CancellationToken)).Value;
        string text = completion.Content[0].Text;
        if (completion.FinishReason == ChatFinishReason.Stop)
        {
            Assert.IsType<JsonObject>(JsonNode.Parse(text));
        }
        else
        {
            Assert.StartsWith("{", text.TrimStart(), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("/v1/completions", """{"prompt": "x = ", "structured_outputs": {"choice": ["alpha", "beta gamma"]}}""", "^(alpha|beta gamma)$")]
    [InlineData("/v1/completions", """{"prompt": "x = ", "guided_choice": ["left", "right"]}""", "^(left|right)$")]
    [InlineData("/v1/completions", """{"prompt": "id: ", "guided_regex": "[A-Z]{2}-[0-9]{3}"}""", "^[A-Z]{2}-[0-9]{3}$")]
    [InlineData("/v1/chat/completions", """{"messages": [{"role": "user", "content": "Pick"}], "structured_outputs": {"regex": "(yes|no), [0-9]{2}"}}""", "^(yes|no), [0-9]{2}$")]
    [InlineData("/v1/chat/completions", """{"messages": [{"role": "user", "content": "Sum"}], "guided_grammar": "root ::= [1-9] (\"+\" [1-9]){1,3}"}""", @"^[1-9](\+[1-9]){1,3}$")]
    [InlineData("/v1/completions", """{"prompt": "point = ", "structured_outputs": {"json": {"type": "array", "items": {"type": "integer", "minimum": 1, "maximum": 9}, "minItems": 2, "maxItems": 2}, "disable_any_whitespace": true}}""", @"^\[[1-9], [1-9]\]$")]
    public async Task Vllm_fields_constrain_both_endpoints(string path, string body, string pattern)
    {
        using HttpClient http = server.CreateClient();
        var request = JsonNode.Parse(body)!.AsObject();
        request["model"] = ServerFixture.ModelName;
        request["max_tokens"] = 40;
        request["temperature"] = 0.8;
        request["seed"] = 5;
        using var response = await http.PostJsonAsync(path, request.ToJsonString());
        string json = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json);
        var choice = JsonNode.Parse(json)!["choices"]![0]!;
        string text = path.EndsWith("chat/completions", StringComparison.Ordinal) ? choice["message"]!["content"]!.GetValue<string>() : choice["text"]!.GetValue<string>();
        Assert.Equal("stop", choice["finish_reason"]!.GetValue<string>());
        Assert.Matches(new Regex(pattern), text);
    }

    /// <summary>A structural tag: free text in which the trigger '@' (pushed up by logit_bias, so it comes) only ever opens "@n=" + an integer + ";".</summary>
    [Fact]
    public async Task Structural_tag_keeps_the_trigger_for_its_structures()
    {
        using HttpClient http = server.CreateClient();
        const string Body = """
            {"model": "celer-tiny", "prompt": "x = ", "max_tokens": 48, "temperature": 1, "seed": 3,
             "logit_bias": {"34": 8},
             "structured_outputs": {"structural_tag": {"structures": [{"begin": "@n=", "schema": {"type": "integer"}, "end": ";"}], "triggers": ["@"]}}}
            """;
        using var response = await http.PostJsonAsync("/v1/completions", Body);
        string json = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.True(response.StatusCode == HttpStatusCode.OK, json);
        var choice = JsonNode.Parse(json)!["choices"]![0]!;
        string text = choice["text"]!.GetValue<string>();
        // Whole structures, then (when cut by max_tokens) at most a structure's beginning.
        string tail = choice["finish_reason"]!.GetValue<string>() == "stop" ? "" : "(@(n(=(-?[0-9]*)?)?)?)?";
        Assert.Matches(new Regex("^([^@]|@n=-?(0|[1-9][0-9]*);)*" + tail + "$"), text);
    }

    [Theory]
    [InlineData("""{"structured_outputs": {"json": {"type": "object", "if": {"required": ["a"]}}}}""", "'if'", "structured_outputs")]
    [InlineData("""{"structured_outputs": {"regex": "(a)\\1"}}""", "backreference", "structured_outputs")]
    [InlineData("""{"structured_outputs": {"grammar": "root ::= undefined-rule"}}""", "undefined-rule", "structured_outputs")]
    [InlineData("""{"structured_outputs": {"regex": "a", "choice": ["b"]}}""", "only use one kind", "structured_outputs")]
    [InlineData("""{"structured_outputs": {"structural_tag": "{}"}}""", "'triggers'", "structured_outputs")]
    [InlineData("""{"response_format": {"type": "structural_tag", "structures": [{"begin": "<b>", "schema": {}, "end": "</b>"}], "triggers": ["<a"]}}""", "starts with no trigger", "structured_outputs")]
    [InlineData("""{"structured_outputs": {"regex": 5}}""", "must be a string", "structured_outputs.regex")]
    [InlineData("""{"guided_json": {"type": "string"}, "response_format": {"type": "json_object"}}""", "Only one of", "structured_outputs")]
    [InlineData("""{"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}""", "json_schema.schema", "response_format")]
    [InlineData("""{"response_format": {"type": "yaml"}}""", "'yaml'", "response_format")]
    public async Task Constraints_that_cannot_be_compiled_are_400s_naming_the_cause(string fields, string named, string param)
    {
        using HttpClient http = server.CreateClient();
        var request = JsonNode.Parse(fields)!.AsObject();
        request["model"] = ServerFixture.ModelName;
        request["prompt"] = "x";
        request["max_tokens"] = 4;
        using var response = await http.PostJsonAsync("/v1/completions", request.ToJsonString());
        string json = await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken);
        Assert.True(response.StatusCode == HttpStatusCode.BadRequest, json);
        var error = JsonNode.Parse(json)!["error"]!;
        Assert.Contains(named, error["message"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(param, error["param"]!.GetValue<string>());
    }
}
