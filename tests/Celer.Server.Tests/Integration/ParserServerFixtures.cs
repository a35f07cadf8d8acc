using System.ClientModel;
using System.Text.Json.Nodes;
using Celer.Engine;
using Celer.Engine.Execution;
using Celer.TestSupport;
using Microsoft.AspNetCore.Builder;
using OpenAI;
using OpenAI.Chat;

namespace Celer.Server.Tests.Integration;

/// <summary>A real server on a loopback port, serving the repository's tiny model with chat-output parsers turned on.</summary>
public abstract class ParserServerFixture : IAsyncLifetime
{
    public const string ModelName = "celer-tiny";

    private LoadedModel? _model;
    private WebApplication? _app;

    public Uri BaseAddress { get; private set; } = null!;

    protected abstract string PrepareModel();

    protected abstract ServerOptions Options();

    public async ValueTask InitializeAsync()
    {
        // The tools preamble of the model's template alone is about 100 tokens; the model allows 1024.
        _model = ModelLoader.Load(new EngineArgs { Model = PrepareModel(), MaxModelLen = 1024, MaxNumSeqs = 8, Seed = 0 });
        _app = CelerServer.Build(Options(), _model);
        await _app.StartAsync();
        BaseAddress = CelerServer.GetBoundAddress(_app);
    }

    public HttpClient CreateClient() => new() { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(60) };

    public ChatClient Chat() =>
        new OpenAIClient(new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(BaseAddress, "/v1") }).GetChatClient(ModelName);

    public virtual async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        if (_model is not null)
            await _model.DisposeAsync();
        GC.SuppressFinalize(this);
    }
}

/// <summary>The tiny model with its own (Qwen-style) chat template, <c>--enable-auto-tool-choice --tool-call-parser hermes</c>.</summary>
public sealed class HermesServerFixture : ParserServerFixture
{
    protected override string PrepareModel() => ServerFixture.DefaultModel;

    protected override ServerOptions Options() => new()
    {
        Port = 0,
        ServedModelNames = [ModelName],
        LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning,
        DisableLogStats = true,
        EnableAutoToolChoice = true,
        ToolCallParser = "hermes",
    };
}

/// <summary>
/// As <see cref="HermesServerFixture"/>, with <c>--exclude-tools-when-tool-choice-none</c>: a request with
/// <c>tool_choice: "none"</c> renders its prompt without the tools.
/// </summary>
public sealed class ExcludeToolsServerFixture : ParserServerFixture
{
    protected override string PrepareModel() => ServerFixture.DefaultModel;

    protected override ServerOptions Options() => new()
    {
        Port = 0,
        ServedModelNames = [ModelName],
        LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning,
        DisableLogStats = true,
        EnableAutoToolChoice = true,
        ToolCallParser = "hermes",
        ExcludeToolsWhenToolChoiceNone = true,
    };
}

/// <summary>
/// The tiny model, unchanged, with three of the tokens it writes renamed in a copy of its tokenizer, so that its real
/// greedy output carries reasoning and tool-call markers: it continues <c>def fibonacci(n):</c> with token 268
/// (<c>"\n   "</c>, now <c>&lt;think&gt;</c>), 391 (<c>' """'</c>), 37 (<c>"C"</c>, now <c>&lt;/think&gt;</c>), 288
/// (<c>"al"</c>), 69 (<c>"c"</c>) and 3719 (<c>"ulate"</c>, now a whole Hermes tool call), as
/// tests/fixtures/celer-tiny-py/reference.json records (greedy margins of 0.5 nats or more). The chat template passes
/// the last message through, so the prompt is exactly that reference prompt. Served with <c>--reasoning-parser qwen3</c>
/// and <c>--enable-auto-tool-choice --tool-call-parser hermes</c>.
/// </summary>
public sealed class MarkerServerFixture() : RenamedTokensServerFixture(
    [(268, "<think>", false), (37, "</think>", false), (3719, ToolCallText, false)], reasoningParser: "qwen3", toolCallParser: "hermes")
{
    public const string Prompt = "def fibonacci(n):";
    public const string ToolCallText = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

    /// <summary>The greedy output's first six tokens as the renamed tokenizer decodes them.</summary>
    public const string RawOutput = "<think> \"\"\"</think>alc" + ToolCallText;
}

/// <summary>
/// As <see cref="MarkerServerFixture"/>, for gpt-oss's harmony format: the tiny model's greedy continuation of
/// <c>def fibonacci(n):</c>, tokens 268, 391, 37, 288, 69, 3719 and 296 (greedy margins of 0.5 nats or more), renamed so
/// that it reads as an analysis message, the final answer and a call. The markers are special tokens, as in
/// o200k_harmony: <c>&lt;|end|&gt;</c> (37) and <c>&lt;|start|&gt;</c> (288) are single ones, written next to each other,
/// so a detokenizer that skipped special tokens would lose them and one that put spaces between them would change the
/// answer; the final answer's header is those two tokens' worth (<c>&lt;|start|&gt;</c>, then the rest of it as 69), so
/// structured output waits for a sequence of two tokens. gpt-oss itself would stop after its answer: the call after it
/// lets one output carry every part. Served with <c>--reasoning-parser openai_gptoss</c> and
/// <c>--enable-auto-tool-choice --tool-call-parser openai</c>.
/// </summary>
public sealed class HarmonyServerFixture() : RenamedTokensServerFixture(
    [
        (268, "<|channel|>analysis<|message|>", true),
        (37, "<|end|>", true),
        (288, "<|start|>", true),
        (69, "assistant<|channel|>final<|message|>", true),
        (296, CallText, true),
        // The markers the parsers look for as tokens of their own, at ids the model does not write here.
        (8185, "<|channel|>", true),
        (8186, "<|message|>", true),
        (8187, "<|constrain|>", true),
        (8188, "<|call|>", true),
        (8189, "<|return|>", true),
    ],
    reasoningParser: "openai_gptoss",
    toolCallParser: "openai")
{
    public const string Prompt = "def fibonacci(n):";
    public const string Reasoning = " \"\"\"";
    public const string Content = "ulate";
    public const string CallText = """<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{"city": "Paris"}""";

    /// <summary>The greedy output's seven tokens, decoded with special tokens kept and nothing put between them.</summary>
    public const string RawOutput = "<|channel|>analysis<|message|>" + Reasoning + "<|end|><|start|>assistant<|channel|>final<|message|>" + Content + CallText;
}

/// <summary>
/// The tiny model with some of its tokens renamed (<see cref="RenamedTokensModel"/>), its chat template passing the last
/// message through, and a reasoning parser and a tool-call parser (with <c>--enable-auto-tool-choice</c>) turned on.
/// </summary>
public abstract class RenamedTokensServerFixture((int Id, string Content, bool Special)[] tokens, string reasoningParser, string toolCallParser)
    : ParserServerFixture
{
    private readonly RenamedTokensModel _model = new(tokens);

    protected override string PrepareModel() => _model.Create();

    protected override ServerOptions Options() => new()
    {
        Port = 0,
        ServedModelNames = [ModelName],
        LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning,
        DisableLogStats = true,
        ChatTemplate = "{{ messages[-1]['content'] }}",
        ReasoningParser = reasoningParser,
        EnableAutoToolChoice = true,
        ToolCallParser = toolCallParser,
    };

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        _model.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>A copy of the repository's tiny model in a temporary folder, with some tokens renamed in its tokenizer.</summary>
internal sealed class RenamedTokensModel((int Id, string Content, bool Special)[] tokens) : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "celer-renamed-tokens-model-" + Guid.NewGuid().ToString("N"));

    /// <summary>Writes the copy; returns its folder.</summary>
    public string Create()
    {
        var source = ServerFixture.DefaultModel;
        Directory.CreateDirectory(_directory);
        foreach (var file in new[] { "config.json", "generation_config.json", "tokenizer_config.json", "model.safetensors" })
            File.Copy(Path.Combine(source, file), Path.Combine(_directory, file));

        var tokenizer = JsonNode.Parse(File.ReadAllText(Path.Combine(source, "tokenizer.json")))!;
        var added = tokenizer["added_tokens"]!.AsArray();
        foreach (var (id, content, special) in tokens)
        {
            added.Add(new JsonObject
            {
                ["id"] = id, ["content"] = content, ["single_word"] = false, ["lstrip"] = false,
                ["rstrip"] = false, ["normalized"] = false, ["special"] = special,
            });
        }
        File.WriteAllText(Path.Combine(_directory, "tokenizer.json"), tokenizer.ToJsonString());
        return _directory;
    }

    public void Dispose()
    {
        if (Directory.Exists(_directory))
            Directory.Delete(_directory, recursive: true);
    }
}
