using System.Net;
using Celer.Router;
using Celer.Server.Tests.Support;

namespace Celer.Server.Tests.Router;

/// <summary>
/// <c>--service-discovery k8s</c> against a fake API server: ready pods become backends and are routed to, pods that
/// turn unready or are deleted leave, a 410 Gone or a dropped watch makes the router list again, bad event lines are
/// skipped. Each pod is a fake backend on its own loopback IP, all on one port, as pods share their serving port.
/// </summary>
public sealed class KubernetesDiscoveryTests : IAsyncLifetime
{
    private const string Completion = $$"""{"model": "{{FakeBackend.Model}}", "prompt": "Hello", "max_tokens": 1}""";

    /// <summary>Generous: a 2-core machine running the other tests may take seconds to re-list and health-check.</summary>
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    private readonly string _serviceAccount = Directory.CreateTempSubdirectory("celer-k8s-").FullName;
    private FakeKubernetesApi _api = null!;
    private FakeBackend _podA = null!;
    private FakeBackend _podB = null!;

    public async ValueTask InitializeAsync()
    {
        _api = await FakeKubernetesApi.StartAsync();
        _podA = await FakeBackend.StartAsync(0, "127.0.0.1");
        _podB = await FakeBackend.StartAsync(_podA.BaseAddress.Port, "127.0.0.2");
        await File.WriteAllTextAsync(Path.Combine(_serviceAccount, "token"), FakeKubernetesApi.Token + "\n");
        await File.WriteAllTextAsync(Path.Combine(_serviceAccount, "namespace"), FakeKubernetesApi.Namespace);
    }

    public async ValueTask DisposeAsync()
    {
        await _podB.DisposeAsync();
        await _podA.DisposeAsync();
        await _api.DisposeAsync();
        Directory.Delete(_serviceAccount, recursive: true);
    }

    private Uri UrlA => _podA.BaseAddress;
    private Uri UrlB => _podB.BaseAddress;

    [Fact]
    public async Task Ready_pods_are_routed_to_and_pods_turning_unready_or_deleted_leave()
    {
        _api.SetPods(
            FakeKubernetesApi.Pod("celer-a", "127.0.0.1", ready: true),
            FakeKubernetesApi.Pod("celer-b", "127.0.0.2", ready: false),
            FakeKubernetesApi.Pod("celer-c", "127.0.0.3", ready: true, phase: "Pending"),
            FakeKubernetesApi.Pod("celer-d", "127.0.0.4", ready: true, deleting: true));
        await using var router = await StartRouterAsync();

        // The first list and the new backend's check ran before the router listened.
        Assert.Equal([UrlA], router.Pool.Backends.Select(b => b.Url));
        Assert.True(router.Pool.Backends[0].IsHealthy);
        Assert.Equal("app=celer", _api.LabelSelector);
        await PostCompletionsAsync(router, 4);
        Assert.Equal(4, _podA.Completions);

        _api.Send("MODIFIED", FakeKubernetesApi.Pod("celer-b", "127.0.0.2", ready: true));
        await Poll.UntilAsync(() => router.Pool.HealthyFor(FakeBackend.Model).Count == 2, Patience, "pod b is a healthy backend");
        await PostCompletionsAsync(router, 10);
        Assert.Equal(4 + 5, _podA.Completions);
        Assert.Equal(5, _podB.Completions);

        _api.Send("MODIFIED", FakeKubernetesApi.Pod("celer-a", "127.0.0.1", ready: false));
        await Poll.UntilAsync(() => router.Pool.Backends.Select(b => b.Url).SequenceEqual([UrlB]), Patience, "unready pod a leaves");
        await PostCompletionsAsync(router, 3);
        Assert.Equal(9, _podA.Completions);
        Assert.Equal(8, _podB.Completions);
        // Its gauges went with it; its counters stay.
        var metrics = await router.MetricsAsync();
        Assert.Equal([UrlB.AbsoluteUri], metrics.Where(m => m.Name == "celer_router_backend_healthy").Select(m => m.Labels["backend"]));
        Assert.Contains(metrics, m => m.Name == "celer_router_requests_total" && m.Labels["backend"] == UrlA.AbsoluteUri);

        _api.Send("DELETED", FakeKubernetesApi.Pod("celer-b", "127.0.0.2", ready: true));
        await Poll.UntilAsync(() => router.Pool.Backends.Count == 0, Patience, "deleted pod b leaves");
        using var none = await router.PostAsync("/v1/completions", Completion);
        Assert.Equal(HttpStatusCode.NotFound, none.StatusCode);
        Assert.Equal(1, _api.Lists);
    }

    [Theory]
    [InlineData("error-event")]
    [InlineData("gone-status")]
    [InlineData("dropped-stream")]
    public async Task A_lost_watch_lists_the_pods_again_and_drops_those_gone_meanwhile(string loss)
    {
        _api.SetPods(FakeKubernetesApi.Pod("celer-a", "127.0.0.1", ready: true));
        await using var router = await StartRouterAsync();
        Assert.Equal([UrlA], router.Pool.Backends.Select(b => b.Url));
        await Poll.UntilAsync(() => _api.Watches == 1, Patience, "the watch is open");

        // Events the router missed: a went, b came. Only a new list tells it.
        _api.SetPods(FakeKubernetesApi.Pod("celer-b", "127.0.0.2", ready: true));
        switch (loss)
        {
            case "error-event":
                _api.SendGone();
                break;
            case "gone-status":
                // The watch ends normally and is resumed from its version, which the server no longer keeps.
                _api.GoneOnNextWatch();
                _api.EndWatch();
                break;
            default:
                _api.DropWatch();
                break;
        }

        await Poll.UntilAsync(() => router.Pool.Backends.Select(b => b.Url).SequenceEqual([UrlB]) && router.Pool.Backends[0].IsHealthy,
            Patience, "the new list's pod b replaces pod a");
        Assert.Equal(2, _api.Lists);
        await PostCompletionsAsync(router, 2);
        Assert.Equal(2, _podB.Completions);
        Assert.Equal(0, _podA.Completions);
    }

    [Fact]
    public async Task Bad_event_lines_are_skipped_and_the_watch_goes_on()
    {
        await using var router = await StartRouterAsync();
        Assert.Empty(router.Pool.Backends);

        _api.SendLine("{not json");
        _api.SendLine("""{"type": "ADDED"}""");
        _api.SendLine("""{"type": "RESIZED", "object": {"metadata": {"name": "x"}}}""");
        _api.Send("ADDED", FakeKubernetesApi.Pod("celer-b", "127.0.0.2", ready: true));

        await Poll.UntilAsync(() => router.Pool.HealthyFor(FakeBackend.Model).Count == 1, Patience, "pod b is a healthy backend");
        Assert.Equal([UrlB], router.Pool.Backends.Select(b => b.Url));
        Assert.Equal(1, _api.Lists);
        Assert.Equal(1, _api.Watches);
    }

    [Fact]
    public void Validation_refuses_a_missing_selector_a_bad_port_and_a_static_list_alongside()
    {
        static string Refusal(RouterOptions options) => Assert.Throws<ArgumentException>(options.Validate).Message;

        Assert.Equal("--k8s-label-selector: required with --service-discovery k8s (which pods are backends, e.g. app=celer).",
            Refusal(new RouterOptions { Backends = [], Kubernetes = new KubernetesDiscovery(null, " ", 8000) }));
        Assert.Equal("--k8s-port 0: must be a port number, 1 to 65535.",
            Refusal(new RouterOptions { Backends = [], Kubernetes = new KubernetesDiscovery(null, "app=celer", 0) }));
        Assert.Equal("--backend: not taken with --service-discovery k8s, whose backends are the pods.",
            Refusal(new RouterOptions { Backends = [BackendSpec.Parse("http://127.0.0.1:1")], Kubernetes = new KubernetesDiscovery(null, "app=celer", 8000) }));
        Assert.Equal("--backend: at least one is required with --service-discovery static.", Refusal(new RouterOptions { Backends = [] }));
    }

    /// <summary>The router discovering pods labelled app=celer through the fake API server, in the namespace its service account names.</summary>
    private Task<RouterUnderTest> StartRouterAsync() => RouterUnderTest.StartAsync(new RouterOptions
    {
        Backends = [],
        Kubernetes = new KubernetesDiscovery(Namespace: null, "app=celer", _podA.BaseAddress.Port)
        {
            ApiServer = new KubernetesApiServer(_api.BaseAddress, Path.Combine(_serviceAccount, "token"), CaCertificatePath: null,
                Path.Combine(_serviceAccount, "namespace")),
        },
        Port = 0,
        HealthCheckInterval = RouterUnderTest.HealthCheckInterval,
        LogLevel = Microsoft.Extensions.Logging.LogLevel.None,
    });

    /// <summary>Sends <paramref name="count"/> completions one after another, each answered 200.</summary>
    private static async Task PostCompletionsAsync(RouterUnderTest router, int count)
    {
        for (var i = 0; i < count; i++)
        {
            using var response = await router.PostAsync("/v1/completions", Completion);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
    }
}
