using Celer.Cli;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Cli;

/// <summary><c>celer serve</c>'s image flags: read as vLLM reads them, and refused at startup with one line.</summary>
public sealed class ServeMediaFlagsTests
{
    [Theory]
    [InlineData("--limit-mm-per-prompt {\"video\":1}", "error: --limit-mm-per-prompt: 'video' inputs are not served (only images are).")]
    [InlineData("--limit-mm-per-prompt {\"image\":-1}", "error: --limit-mm-per-prompt: the count of 'image' must be a whole number of 0 or more.")]
    [InlineData("--allowed-local-media-path /no-such-dir-for-celer", "error: Invalid --allowed-local-media-path: the path /no-such-dir-for-celer does not exist.")]
    public async Task Bad_image_flags_are_refused_before_the_model_loads(string flags, string message)
    {
        // The model path does not exist: a refusal after loading would say that instead.
        var args = new[] { "serve", Path.Combine(Path.GetTempPath(), "no-such-model-" + Guid.NewGuid().ToString("N")), "--port", "0" }
            .Concat(flags.Split(' ', 2)).ToArray();
        (int exitCode, string output, string error) = await CelerCli.RunAsync(args);

        Assert.Equal(1, exitCode);
        Assert.Equal(message + Environment.NewLine, error);
        Assert.Empty(output);
    }

    [Fact]
    public void The_fetch_timeout_comes_from_CELER_IMAGE_FETCH_TIMEOUT()
    {
        Assert.Equal(TimeSpan.FromSeconds(5), ServeCommand.ImageFetchTimeout(null));
        Assert.Equal(TimeSpan.FromSeconds(2.5), ServeCommand.ImageFetchTimeout("2.5"));
        Assert.Throws<CliException>(() => ServeCommand.ImageFetchTimeout("0"));
        Assert.Throws<CliException>(() => ServeCommand.ImageFetchTimeout("five"));
    }
}
