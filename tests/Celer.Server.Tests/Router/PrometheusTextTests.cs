using Celer.Router;

namespace Celer.Server.Tests.Router;

/// <summary><see cref="PrometheusText"/> on what exporters write: labels, escapes, comments, special values, timestamps, and malformed lines refused by line.</summary>
public sealed class PrometheusTextTests
{
    [Fact]
    public void Samples_are_read_with_their_labels_and_comments_and_blank_lines_are_skipped()
    {
        const string text = """
            # HELP vllm:num_requests_waiting Number of requests waiting to be processed.
            # TYPE vllm:num_requests_waiting gauge
            vllm:num_requests_waiting{model_name="m",engine="0"} 3.0
            vllm:num_requests_waiting{model_name="m",engine="1"} 4

            # a comment of no kind
            process_open_fds 17
            http_requests_total{method="post",code="200",} 1027 1395066363000
              spaced_out { a = "1" , b="2" }	-1.5e3
            """;
        var samples = PrometheusText.Parse(text);

        Assert.Equal(["vllm:num_requests_waiting", "vllm:num_requests_waiting", "process_open_fds", "http_requests_total", "spaced_out"], samples.Select(s => s.Name));
        Assert.Equal([3.0, 4.0, 17.0, 1027.0, -1500.0], samples.Select(s => s.Value));
        Assert.Equal(new Dictionary<string, string> { ["model_name"] = "m", ["engine"] = "1" }, samples[1].Labels);
        Assert.Empty(samples[2].Labels);
        Assert.Equal(new Dictionary<string, string> { ["method"] = "post", ["code"] = "200" }, samples[3].Labels);
        Assert.Equal(new Dictionary<string, string> { ["a"] = "1", ["b"] = "2" }, samples[4].Labels);
    }

    [Fact]
    public void Escaped_quotes_backslashes_and_newlines_in_label_values_are_unescaped()
    {
        var sample = Assert.Single(PrometheusText.Parse("""msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\"",brace="}{,="} 1.458255915e9""" + "\r\n"));

        Assert.Equal(@"C:\DIR\FILE.TXT", sample.Labels["path"]);
        Assert.Equal("Cannot find file:\n\"FILE.TXT\"", sample.Labels["error"]);
        Assert.Equal("}{,=", sample.Labels["brace"]);
        Assert.Equal(1.458255915e9, sample.Value);
    }

    [Fact]
    public void NaN_and_infinities_are_read_as_values()
    {
        var samples = PrometheusText.Parse("""
            a NaN
            b +Inf
            c -Inf
            d{le="+Inf"} 12
            e inf
            """);

        Assert.True(double.IsNaN(samples[0].Value));
        Assert.Equal([double.PositiveInfinity, double.NegativeInfinity, 12, double.PositiveInfinity], samples.Skip(1).Select(s => s.Value));
        Assert.Equal("+Inf", samples[3].Labels["le"]);
    }

    [Fact]
    public void An_empty_exposition_has_no_samples() => Assert.Empty(PrometheusText.Parse("\n# only a comment\n\n"));

    [Theory]
    [InlineData("a{b=\"c\"", "',' or '}' was expected")]
    [InlineData("a{b=\"c} 1", "a label value is not closed")]
    [InlineData("a{b=c} 1", "a label value must be quoted")]
    [InlineData("a{b=\"\\t\"} 1", "the escape \\t")]
    [InlineData("a{b=\"1\",b=\"2\"} 1", "the label b appears twice")]
    [InlineData("a{b=\"1\" c=\"2\"} 1", "',' or '}' was expected")]
    [InlineData("a{1b=\"1\"} 1", "a label name was expected")]
    [InlineData("a{b:c=\"1\"} 1", "'=' was expected after the label b")]
    [InlineData("a", "no value")]
    [InlineData("a{b=\"1\"}", "no value")]
    [InlineData("a one", "the value is not a number")]
    [InlineData("a 1,5", "the value is not a number")]
    [InlineData("a 1 12.5", "the timestamp is not an integer")]
    [InlineData("a 1 12 extra", "text after the value and timestamp")]
    [InlineData("1a 1", "no metric name")]
    [InlineData("{b=\"1\"} 1", "no metric name")]
    public void A_malformed_line_fails_the_whole_text_naming_its_line(string line, string reason)
    {
        var error = Assert.Throws<FormatException>(() => PrometheusText.Parse("# HELP a fine\ngood 1\n" + line + "\nlater 2\n"));

        Assert.StartsWith("line 3: ", error.Message, StringComparison.Ordinal);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }
}
