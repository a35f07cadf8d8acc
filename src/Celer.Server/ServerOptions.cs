using Celer.ChatTemplates;
using Celer.Server.Media;

namespace Celer.Server;

/// <summary>
/// Server settings, named after vLLM's <c>vllm serve</c> frontend flags where one exists. A server of several models
/// reads each model's own copy (<see cref="ModelToServe.Options"/>) for what is per model: its names, chat template,
/// generation config, parsers, logprobs cap and request queue.
/// </summary>
public sealed record ServerOptions
{
    /// <summary>Interface to bind; loopback by default so a fresh server is not exposed by accident.</summary>
    public string Host { get; init; } = "127.0.0.1";

    /// <summary>TCP port; 0 binds an ephemeral port (read it back from <c>CelerServer.GetBoundAddress</c>).</summary>
    public int Port { get; init; } = 8000;

    /// <summary>When set, every request outside the public probes must carry <c>Authorization: Bearer KEY</c>.</summary>
    public string? ApiKey { get; init; }

    /// <summary>Names the model answers to; empty means the loaded model's name.</summary>
    public IReadOnlyList<string> ServedModelNames { get; init; } = [];

    /// <summary>CORS (vLLM's <c>--allowed-origins</c>, <c>--allowed-methods</c>, <c>--allowed-headers</c>, <c>--allow-credentials</c>).</summary>
    public IReadOnlyList<string> AllowedOrigins { get; init; } = ["*"];
    public IReadOnlyList<string> AllowedMethods { get; init; } = ["*"];
    public IReadOnlyList<string> AllowedHeaders { get; init; } = ["*"];
    public bool AllowCredentials { get; init; }

    /// <summary>
    /// Sequences (each prompt of a request times its n) admitted and not yet finished, beyond which new requests get
    /// 503 with <c>Retry-After</c> (BAD_INPUT.md #26); below it they queue inside the engine. A request that alone
    /// asks for more gets a 400.
    /// </summary>
    public int MaxPendingRequests { get; init; } = 1024;

    /// <summary>
    /// vLLM's <c>--trust-request-chat-template</c>: accept a <c>chat_template</c> sent with a request. Off by
    /// default, as in vLLM: a template is code the server runs, so only a server that trusts its clients takes theirs.
    /// </summary>
    public bool TrustRequestChatTemplate { get; init; }

    /// <summary>On SIGTERM, how long in-flight requests may run before the server exits.</summary>
    public TimeSpan ShutdownTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Cap on <c>logprobs</c> / <c>top_logprobs</c> / <c>prompt_logprobs</c> (vLLM's <c>--max-logprobs</c>).</summary>
    public int MaxLogprobs { get; init; } = 20;

    /// <summary>Least severe log level written (vLLM's <c>--log-level</c> is the CLI's spelling).</summary>
    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>vLLM's <c>--enable-log-requests</c>: one log line per request received (off by default, as in vLLM).</summary>
    public bool EnableLogRequests { get; init; }

    /// <summary>vLLM's <c>--disable-log-stats</c>: no periodic throughput/queue/KV-cache line.</summary>
    public bool DisableLogStats { get; init; }

    /// <summary>How often the stats line is written while the engine has work (vLLM: 10 s).</summary>
    public TimeSpan StatsLogInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Metric name prefix; vLLM's dashboards expect <c>vllm:</c>.</summary>
    public string MetricsPrefix { get; init; } = "vllm:";

    /// <summary>vLLM's <c>--generation-config</c>: <c>auto</c> takes sampling defaults from the model, <c>vllm</c> ignores them.</summary>
    public string GenerationConfig { get; init; } = "auto";

    /// <summary>
    /// vLLM's <c>--reasoning-parser</c> (<c>deepseek_r1</c>, <c>qwen3</c>): chat replies carry the model's thinking as
    /// <c>reasoning_content</c> apart from the <c>content</c>. Null: the output is all content.
    /// </summary>
    public string? ReasoningParser { get; init; }

    /// <summary>vLLM's <c>--enable-auto-tool-choice</c>: read tool calls out of <c>tool_choice: "auto"</c> replies (needs <see cref="ToolCallParser"/>).</summary>
    public bool EnableAutoToolChoice { get; init; }

    /// <summary>
    /// vLLM's <c>--exclude-tools-when-tool-choice-none</c>: a chat request with <c>tool_choice: "none"</c> renders its
    /// prompt without the tools (they are still checked). Off by default, as in vLLM: the template gets the tools and
    /// only the calls are not read.
    /// </summary>
    public bool ExcludeToolsWhenToolChoiceNone { get; init; }

    /// <summary>vLLM's <c>--tool-call-parser</c>: the model's tool-call format (<c>hermes</c>, <c>llama3_json</c>, <c>mistral</c>, <c>qwen3_xml</c>, <c>pythonic</c>).</summary>
    public string? ToolCallParser { get; init; }

    /// <summary>A chat template source overriding the tokenizer's (already read from a file by the CLI).</summary>
    public string? ChatTemplate { get; init; }

    /// <summary>
    /// vLLM's <c>--chat-template-content-format</c>: how message content is handed to the chat template, one string or
    /// OpenAI's list of parts. Null (<c>auto</c>, vLLM's default): the template's own, detected from its loops.
    /// </summary>
    public ChatTemplateContentFormat? ChatTemplateContentFormat { get; init; }

    /// <summary>vLLM's <c>--interleave-mm-strings</c>: string-format content keeps each image's placeholder where its part is.</summary>
    public bool InterleaveMmStrings { get; init; }

    /// <summary>Image inputs: where they may come from, how many a request may carry, and the caps on their bytes and pixels.</summary>
    public MediaOptions Media { get; init; } = new();

    /// <summary>Largest request body; larger ones get 413 before being read whole.</summary>
    public long MaxRequestBodyBytes { get; init; } = 32L * 1024 * 1024;

    /// <summary>Largest total request header size; larger ones get 431.</summary>
    public int MaxRequestHeadersTotalBytes { get; init; } = 32 * 1024;

    /// <summary>
    /// A record for its <c>with</c> copies (one per served model); the compiler's <c>ToString</c> would write every
    /// property, the API key included, into whatever logs it.
    /// </summary>
    public override string ToString() => $"{nameof(ServerOptions)} {{ {CelerServer.FormatUrl(Host, Port)} }}";

    /// <summary>
    /// vLLM's startup checks of the parser flags, which need no model: a known reasoning parser, a known tool-call parser,
    /// and <c>--enable-auto-tool-choice</c> only with <c>--tool-call-parser</c>. Throws <see cref="ArgumentException"/>
    /// naming the flag and the known names. (Whether the model's tokenizer has the parsers' markers is checked when the
    /// server is built.)
    /// </summary>
    public void CheckChatParsers()
    {
        if (ReasoningParser is { } reasoning)
            Reasoning.ReasoningParserRegistry.CheckName(reasoning);
        ToolCalling.ToolParserRegistry.CheckOptions(EnableAutoToolChoice, ToolCallParser);
    }
}
