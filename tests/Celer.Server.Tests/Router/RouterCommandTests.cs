using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Router;

/// <summary><c>celer router</c> refuses bad flag values with one line naming the flag, before it starts anything.</summary>
public sealed class RouterCommandTests
{
    [Theory]
    [InlineData("--prefix-chunk-size", "0", "--prefix-chunk-size 0: must be at least 1 character.")]
    [InlineData("--prefix-max-chunks", "-3", "--prefix-max-chunks -3: must be at least 1.")]
    [InlineData("--circuit-breaker-threshold", "-1", "--circuit-breaker-threshold -1: must be 0 (off) or more.")]
    [InlineData("--circuit-breaker-cooldown", "0", "--circuit-breaker-cooldown 0: must be a positive number of seconds.")]
    [InlineData("--circuit-breaker-cooldown", "NaN", "--circuit-breaker-cooldown NaN: must be a positive number of seconds.")]
    [InlineData("--metrics-scrape-interval", "-2", "--metrics-scrape-interval -2: must be a positive number of seconds, at most 4294967.294.")]
    [InlineData("--health-check-interval", "1e300", "--health-check-interval 1E+300: must be a positive number of seconds.")]
    [InlineData("--max-pending-requests", "0", "--max-pending-requests 0: must be at least 1.")]
    [InlineData("--max-pending-requests", "-4", "--max-pending-requests -4: must be at least 1.")]
    [InlineData("--max-pending-requests", "1.5", "--max-pending-requests 1.5: must be a whole number.")]
    [InlineData("--max-pending-requests", "many", "--max-pending-requests many: must be a whole number.")]
    [InlineData("--max-pending-requests", "3000000000", "--max-pending-requests 3000000000: must be a whole number.")]
    [InlineData("--health-check-interval", "5000000", "--health-check-interval 5000000: must be a positive number of seconds, at most 4294967.294.")]
    public async Task A_bad_value_is_refused_with_one_line_naming_the_flag(string flag, string value, string message)
    {
        var (exitCode, output, error) = await CelerCli.RunAsync("router", "--backend", "http://127.0.0.1:1", "--port", "0", flag, value);

        Assert.Equal(1, exitCode);
        Assert.Equal($"error: {message}{Environment.NewLine}", error);
        Assert.Empty(output);
    }

    [Theory]
    [InlineData("--k8s-label-selector: required with --service-discovery k8s (which pods are backends, e.g. app=celer).", "--service-discovery", "k8s")]
    [InlineData("--k8s-port 70000: must be a port number, 1 to 65535.", "--service-discovery", "k8s", "--k8s-label-selector", "app=celer", "--k8s-port", "70000")]
    [InlineData("--backend: not taken with --service-discovery k8s, whose backends are the pods.", "--service-discovery", "k8s", "--k8s-label-selector", "app=celer", "--backend", "http://127.0.0.1:1")]
    [InlineData("--backend: at least one is required with --service-discovery static.")]
    [InlineData("--k8s-label-selector: only taken with --service-discovery k8s.", "--backend", "http://127.0.0.1:1", "--k8s-label-selector", "app=celer")]
    [InlineData("--k8s-port: only taken with --service-discovery k8s.", "--service-discovery", "static", "--backend", "http://127.0.0.1:1", "--k8s-port", "8000")]
    public async Task Discovery_flags_that_do_not_fit_are_refused_with_one_line(string message, params string[] flags)
    {
        var (exitCode, output, error) = await CelerCli.RunAsync(["router", "--port", "0", .. flags]);

        Assert.Equal(1, exitCode);
        Assert.Equal($"error: {message}{Environment.NewLine}", error);
        Assert.Empty(output);
    }

    [Fact]
    public async Task An_unknown_routing_logic_is_refused_listing_the_known_ones()
    {
        var (exitCode, _, error) = await CelerCli.RunAsync("router", "--backend", "http://127.0.0.1:1", "--routing-logic", "random");

        Assert.Equal(1, exitCode);
        Assert.Contains("random", error, StringComparison.Ordinal);
        Assert.Contains("prefix-aware", error, StringComparison.Ordinal);
        Assert.Contains("least-loaded", error, StringComparison.Ordinal);
    }
}
