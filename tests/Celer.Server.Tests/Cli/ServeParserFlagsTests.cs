using Celer.Server.Tests.Integration;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Cli;

/// <summary><c>celer serve</c>'s parser flags: refused at startup with one line naming what is wrong, as vLLM refuses them.</summary>
public sealed class ServeParserFlagsTests
{
    [Theory]
    [InlineData("--reasoning-parser deepseek", "error: --reasoning-parser 'deepseek' is not a known reasoning parser; the known ones are: deepseek_r1, openai_gptoss, qwen3.")]
    [InlineData("--enable-auto-tool-choice", "error: --enable-auto-tool-choice requires --tool-call-parser.")]
    [InlineData("--enable-auto-tool-choice --tool-call-parser qwen3", "error: --tool-call-parser 'qwen3' is not a known tool call parser; the known ones are: hermes, llama3_json, mistral, openai, pythonic, qwen3_coder, qwen3_xml.")]
    public async Task Unknown_parsers_are_refused_before_the_model_loads(string flags, string message)
    {
        // The model path does not exist: a refusal after loading would say that instead.
        var args = new[] { "serve", Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid().ToString("N")), "--port", "0" }
            .Concat(flags.Split(' ')).ToArray();
        (int exitCode, string output, string error) = await CelerCli.RunAsync(args);

        Assert.Equal(1, exitCode);
        Assert.Equal(message + Environment.NewLine, error);
        Assert.Empty(output);
    }

    [Theory]
    [InlineData("--reasoning-parser qwen3", "error: --reasoning-parser qwen3: the model's tokenizer has no '<think>' token.")]
    [InlineData("--enable-auto-tool-choice --tool-call-parser mistral", "error: --tool-call-parser mistral: the model's tokenizer has no '[TOOL_CALLS]' token")]
    [InlineData("--reasoning-parser openai_gptoss", "error: --reasoning-parser openai_gptoss: the model's tokenizer has no '<|start|>' token")]
    [InlineData("--enable-auto-tool-choice --tool-call-parser openai", "error: --tool-call-parser openai: the model's tokenizer has no '<|message|>' token")]
    public async Task A_parser_whose_markers_the_model_lacks_is_refused_at_startup(string flags, string start)
    {
        var args = new[] { "serve", ServerFixture.DefaultModel, "--port", "0", "--disable-log-stats" }.Concat(flags.Split(' ')).ToArray();
        (int exitCode, _, string error) = await CelerCli.RunAsync(args);

        Assert.Equal(1, exitCode);
        Assert.StartsWith(start, error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", error, StringComparison.Ordinal);
    }
}
