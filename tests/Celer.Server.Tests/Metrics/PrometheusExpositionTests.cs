using Celer.Server.Metrics;
using Prometheus;

namespace Celer.Server.Tests.Metrics;

public class PrometheusExpositionTests
{
    [Fact]
    public async Task Metric_names_carry_vllms_colon_prefix_on_the_wire()
    {
        var exposition = new PrometheusExposition("vllm:");
        Assert.Equal("vllm_", exposition.InternalPrefix);
        var factory = Prometheus.Metrics.WithCustomRegistry(exposition.Registry);
        factory.CreateCounter("vllm_prompt_tokens_total", "Prompt tokens.", ["model_name"]).WithLabels("vllm_like_model").Inc(7);
        factory.CreateHistogram("vllm_e2e_request_latency_seconds", "Latency.", new HistogramConfiguration { LabelNames = ["model_name"], Buckets = [0.5, 1] })
            .WithLabels("m").Observe(0.75);

        var text = await exposition.ExportAsync(CancellationToken.None);

        Assert.Contains("# HELP vllm:prompt_tokens_total Prompt tokens.", text);
        Assert.Contains("# TYPE vllm:prompt_tokens_total counter", text);
        // Label values are data, not names: only the leading name is rewritten.
        Assert.Contains("vllm:prompt_tokens_total{model_name=\"vllm_like_model\"} 7", text);
        Assert.Contains("vllm:e2e_request_latency_seconds_bucket{model_name=\"m\",le=\"0.5\"} 0", text);
        Assert.Contains("vllm:e2e_request_latency_seconds_bucket{model_name=\"m\",le=\"1\"} 1", text);
        Assert.Contains("vllm:e2e_request_latency_seconds_count{model_name=\"m\"} 1", text);
        Assert.DoesNotContain("\nvllm_", text);
    }

    [Fact]
    public void A_prefix_without_colon_is_left_alone()
    {
        var exposition = new PrometheusExposition("celer_");
        Assert.Equal("celer_", exposition.InternalPrefix);
    }

    [Fact]
    public void Token_buckets_are_vllms_1_2_5_series()
    {
        Assert.Equal([1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000], EngineMetrics.Build125Buckets(2048));
        Assert.Equal([1, 2, 5, 10], EngineMetrics.Build125Buckets(10));
    }
}
