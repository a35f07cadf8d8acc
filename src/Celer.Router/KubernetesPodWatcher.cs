using System.Net;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace Celer.Router;

/// <summary>
/// <c>--service-discovery k8s</c>: keeps <see cref="BackendPool"/> equal to the ready pods matching the label selector.
/// It lists the pods, then watches them from the list's <c>resourceVersion</c> (newline-delimited JSON events), as
/// client-go's reflector does: a watch that ends is resumed from the last version seen; a 410 Gone (that version is too
/// old) or a broken connection starts over with a new list, which also drops the pods that went while nobody watched.
/// A pod is a backend at <c>http://{podIP}:{port}/</c> while it is running, has an IP, is Ready and is not being deleted.
/// </summary>
internal sealed partial class KubernetesPodWatcher : BackgroundService
{
    /// <summary>
    /// Asked of the API server so a watch ends and is resumed now and then: a connection that died without a reset would
    /// otherwise hang the watch for good. client-go picks 5 to 10 minutes.
    /// </summary>
    private const int WatchTimeoutSeconds = 300;

    /// <summary>A list should take well under a second; more is an API server in trouble, and the list is tried again.</summary>
    private static readonly TimeSpan ListTimeout = TimeSpan.FromSeconds(30);

    /// <summary>Retries after a failure start at 1 s and double up to 30 s, so a down API server is not hammered.</summary>
    private static readonly TimeSpan FirstRetryDelay = TimeSpan.FromSeconds(1);

    private static readonly TimeSpan MaxRetryDelay = TimeSpan.FromSeconds(30);

    private readonly BackendPool _pool;
    private readonly KubernetesApiServer _api;
    private readonly HttpClient _client;
    private readonly string _podsPath;
    private readonly int _port;
    private readonly ILogger<KubernetesPodWatcher> _logger;

    /// <summary>Where the next watch starts; null: list first.</summary>
    private string? _resourceVersion;

    /// <summary>Each ready pod's backend URL, by pod name (names are unique in a namespace; IPs are reused).</summary>
    private readonly Dictionary<string, Uri> _backendOfPod = new(StringComparer.Ordinal);

    /// <param name="ns">The namespace of the pods.</param>
    public KubernetesPodWatcher(BackendPool pool, KubernetesApiServer api, string ns, KubernetesDiscovery discovery, ILogger<KubernetesPodWatcher> logger)
    {
        _pool = pool;
        _api = api;
        _logger = logger;
        _port = discovery.Port;
        _podsPath = $"api/v1/namespaces/{Uri.EscapeDataString(ns)}/pods?labelSelector={Uri.EscapeDataString(discovery.LabelSelector)}";
        _client = api.CreateClient();
    }

    public override async Task StartAsync(CancellationToken cancellationToken)
    {
        // The first list runs before the router listens, so its first requests already have the ready pods. An API
        // server that cannot be reached now is retried by the watch loop rather than stopping the router.
        try
        {
            _resourceVersion = await ListAsync(cancellationToken);
        }
        catch (Exception e) when (IsApiFailure(e) && !cancellationToken.IsCancellationRequested)
        {
            LogListFailed(e.Message);
        }
        await base.StartAsync(cancellationToken);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var retryDelay = FirstRetryDelay;
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                _resourceVersion ??= await ListAsync(stoppingToken);
                _resourceVersion = await WatchAsync(_resourceVersion, stoppingToken);
                retryDelay = FirstRetryDelay;
                continue;
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            catch (HttpRequestException e) when (e.StatusCode == HttpStatusCode.Gone)
            {
                // The version watched from is older than the API server keeps: nothing is wrong, list again at once.
                LogGone(e.Message);
                _resourceVersion = null;
                continue;
            }
            catch (Exception e) when (IsApiFailure(e))
            {
                LogWatchFailed(e.Message, retryDelay.TotalSeconds);
                _resourceVersion = null;
            }
            try
            {
                await Task.Delay(retryDelay, stoppingToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            retryDelay = TimeSpan.FromTicks(Math.Min(retryDelay.Ticks * 2, MaxRetryDelay.Ticks));
        }
    }

    public override void Dispose()
    {
        _client.Dispose();
        base.Dispose();
    }

    private static bool IsApiFailure(Exception e) =>
        e is HttpRequestException or IOException or JsonException or TaskCanceledException or UnauthorizedAccessException;

    /// <summary>Lists the pods, makes the pool match them, and returns the list's resourceVersion to watch from.</summary>
    private async Task<string> ListAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(ListTimeout);
        using var response = await SendAsync(_podsPath, HttpCompletionOption.ResponseContentRead, timeout.Token);
        var list = JsonNode.Parse(await response.Content.ReadAsStringAsync(timeout.Token)) as JsonObject
                   ?? throw new JsonException("the pod list is not a JSON object");
        var resourceVersion = (string?)list["metadata"]?["resourceVersion"]
                              ?? throw new JsonException("the pod list has no metadata.resourceVersion");
        var pods = (list["items"] as JsonArray ?? []).OfType<JsonObject>().ToList();

        var listed = pods.Select(PodName).OfType<string>().ToHashSet(StringComparer.Ordinal);
        foreach (var gone in _backendOfPod.Keys.Where(name => !listed.Contains(name)).ToList())
            Forget(gone);
        // Each ApplyAsync changes _backendOfPod before its first await (the pool's check of a new backend), so the
        // checks run concurrently while the map is only ever changed by this one thread of calls.
        await Task.WhenAll(pods.Select(pod => ApplyAsync(pod, cancellationToken)));
        LogListed(pods.Count, _backendOfPod.Count, resourceVersion);
        return resourceVersion;
    }

    /// <summary>
    /// Watches from <paramref name="resourceVersion"/> until the API server ends the stream; returns the last version
    /// seen, to resume from.
    /// </summary>
    /// <exception cref="HttpRequestException">An error answer or ERROR event, its status code set (410 Gone: list again).</exception>
    private async Task<string> WatchAsync(string resourceVersion, CancellationToken cancellationToken)
    {
        var path = $"{_podsPath}&watch=true&allowWatchBookmarks=true&timeoutSeconds={WatchTimeoutSeconds}&resourceVersion={Uri.EscapeDataString(resourceVersion)}";
        using var response = await SendAsync(path, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancellationToken));
        while (await reader.ReadLineAsync(cancellationToken) is { } line)
        {
            if (line.Length == 0)
                continue;
            JsonObject? watchEvent;
            try
            {
                watchEvent = JsonNode.Parse(line) as JsonObject;
            }
            catch (JsonException e)
            {
                // One event lost is better than a re-list for every bad line; a pod it concerned is put right by the
                // next event about it, or the next list.
                LogBadEvent(e.Message);
                continue;
            }
            var type = (string?)watchEvent?["type"];
            if (watchEvent?["object"] is not JsonObject item || type is null)
            {
                LogBadEvent("no type or object");
                continue;
            }
            switch (type)
            {
                case "ADDED" or "MODIFIED":
                    await ApplyAsync(item, cancellationToken);
                    break;
                case "DELETED":
                    if (PodName(item) is { } name)
                        Forget(name);
                    break;
                case "ERROR":
                    // The object is a Status; its code 410 means the version is older than the API server keeps.
                    throw new HttpRequestException($"watch error {(int?)item["code"]}: {(string?)item["message"]}", null,
                        (HttpStatusCode?)(int?)item["code"]);
                case "BOOKMARK":
                    break;
                default:
                    LogBadEvent($"unknown type {type}");
                    continue;
            }
            resourceVersion = (string?)item["metadata"]?["resourceVersion"] ?? resourceVersion;
        }
        return resourceVersion;
    }

    private async Task<HttpResponseMessage> SendAsync(string path, HttpCompletionOption completion, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, path);
        request.Headers.Authorization = _api.ReadToken();
        var response = await _client.SendAsync(request, completion, cancellationToken);
        if (response.IsSuccessStatusCode)
            return response;
        using (response)
        {
            // The body is a Status whose message says why (a forbidden service account names its missing permission).
            var body = await response.Content.ReadAsStringAsync(cancellationToken);
            throw new HttpRequestException($"{(int)response.StatusCode} {response.StatusCode} from {path}: {body}", null, response.StatusCode);
        }
    }

    /// <summary>Makes the pool hold <paramref name="pod"/>'s backend if it is ready, and not hold it otherwise.</summary>
    private async Task ApplyAsync(JsonObject pod, CancellationToken cancellationToken)
    {
        if (PodName(pod) is not { } name)
            return;
        var url = BackendUrl(pod);
        var previous = _backendOfPod.GetValueOrDefault(name);
        if (previous == url)
            return;
        if (previous is not null)
            Forget(name);
        if (url is null)
            return;
        _backendOfPod[name] = url;
        LogPodReady(name, url);
        await _pool.AddAsync(new BackendSpec(url, Model: null), cancellationToken);
    }

    /// <summary>The pod is no backend any more; its URL leaves the pool unless another pod has it (host-network pods share their node's IP).</summary>
    private void Forget(string name)
    {
        if (!_backendOfPod.Remove(name, out var url))
            return;
        LogPodGone(name, url);
        if (!_backendOfPod.ContainsValue(url))
            _pool.Remove(url);
    }

    /// <summary>Where the pod serves, while it is a backend: running, with an IP, Ready, not being deleted; else null.</summary>
    private Uri? BackendUrl(JsonObject pod)
    {
        if (pod["metadata"]?["deletionTimestamp"] is not null)
            return null;
        var status = pod["status"];
        if ((string?)status?["phase"] != "Running" || (string?)status["podIP"] is not { Length: > 0 } ip)
            return null;
        var ready = (status["conditions"] as JsonArray ?? []).OfType<JsonObject>()
            .Any(condition => (string?)condition["type"] == "Ready" && (string?)condition["status"] == "True");
        if (!ready || !IPAddress.TryParse(ip, out var address))
            return null;
        var host = address.AddressFamily == System.Net.Sockets.AddressFamily.InterNetworkV6 ? $"[{ip}]" : ip;
        return new Uri($"http://{host}:{_port}/");
    }

    private static string? PodName(JsonObject pod) => (string?)pod["metadata"]?["name"];

    [LoggerMessage(Level = LogLevel.Information, Message = "Listed {Pods} pods, {Ready} ready, at resourceVersion {ResourceVersion}")]
    private partial void LogListed(int pods, int ready, string resourceVersion);

    [LoggerMessage(Level = LogLevel.Information, Message = "Pod {Pod} is ready at {Backend}")]
    private partial void LogPodReady(string pod, Uri backend);

    [LoggerMessage(Level = LogLevel.Information, Message = "Pod {Pod} at {Backend} is no longer ready or is gone")]
    private partial void LogPodGone(string pod, Uri backend);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Skipped a watch event that could not be read: {Reason}")]
    private partial void LogBadEvent(string reason);

    [LoggerMessage(Level = LogLevel.Information, Message = "Watch expired ({Reason}); listing the pods again")]
    private partial void LogGone(string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Listing the pods failed, retrying in the background: {Reason}")]
    private partial void LogListFailed(string reason);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Watching the pods failed, listing them again in {Seconds} s: {Reason}")]
    private partial void LogWatchFailed(string reason, double seconds);
}
