using System.Diagnostics;
using System.Net.Http.Headers;

namespace Celer.Cli.Bench;

/// <summary>
/// HTTP load of one request body on a set of targets, asked in turn, in either of two models. Closed loop (wrk's): each of
/// <c>concurrency</c> clients sends a request, waits for the whole answer and sends the next, so the rate is what the
/// servers sustain at that concurrency. Open loop (vLLM's <c>bench serve</c>, wrk2's): requests leave at a given rate as a
/// Poisson process whatever is still in flight, so the latency is the servers' at that rate. A latency is from sending
/// the request to having read the last byte of its answer.
/// </summary>
internal sealed class HttpLoad(HttpClient http, IReadOnlyList<Uri> targets, byte[] body)
{
    private static readonly MediaTypeHeaderValue Json = new("application/json");
    private int _turn;

    /// <param name="Latencies">Seconds per successful request.</param>
    /// <param name="Seconds">From the first request sent to the last answer read.</param>
    public sealed record Phase(List<double> Latencies, int Failed, double Seconds, string? FirstError);

    private sealed record Outcome(double? Latency, string? Error);

    public async Task<Phase> RunClosedLoopAsync(int concurrency, TimeSpan length, CancellationToken cancellationToken)
    {
        var start = Stopwatch.GetTimestamp();
        var deadline = start + (long)(length.TotalSeconds * Stopwatch.Frequency);
        var clients = new Task<List<Outcome>>[concurrency];
        for (var i = 0; i < concurrency; i++)
        {
            clients[i] = Task.Run(async () =>
            {
                var outcomes = new List<Outcome>();
                while (Stopwatch.GetTimestamp() < deadline)
                    outcomes.Add(await SendAsync(cancellationToken));
                return outcomes;
            }, cancellationToken);
        }
        var outcomesByClient = await Task.WhenAll(clients);
        return Collect(outcomesByClient.SelectMany(o => o), Stopwatch.GetElapsedTime(start).TotalSeconds);
    }

    /// <param name="seed">Of the arrival times, so both paths of a comparison see the same gaps.</param>
    public async Task<Phase> RunOpenLoopAsync(double requestsPerSecond, TimeSpan length, int seed, CancellationToken cancellationToken)
    {
        var arrivals = new Random(seed);
        var start = Stopwatch.GetTimestamp();
        var end = length.TotalSeconds;
        var requests = new List<Task<Outcome>>();
        var due = 0.0;
        while (due < end)
        {
            // A timer wakes about once a millisecond: the requests due by then leave together, on both paths alike.
            while (due <= Stopwatch.GetElapsedTime(start).TotalSeconds && due < end)
            {
                requests.Add(Task.Run(() => SendAsync(cancellationToken), cancellationToken));
                due += -Math.Log(1 - arrivals.NextDouble()) / requestsPerSecond;
            }
            await Task.Delay(1, cancellationToken);
        }
        var outcomes = await Task.WhenAll(requests);
        return Collect(outcomes, Stopwatch.GetElapsedTime(start).TotalSeconds);
    }

    /// <summary>One request and its whole answer, as text, for checking that two paths answer alike.</summary>
    public async Task<string> AskAsync(Uri target, CancellationToken cancellationToken)
    {
        using var request = Request(target);
        using var response = await http.SendAsync(request, cancellationToken);
        var text = await response.Content.ReadAsStringAsync(cancellationToken);
        return response.IsSuccessStatusCode ? text : throw new CliException($"{target}: HTTP {(int)response.StatusCode}: {text}");
    }

    private static Phase Collect(IEnumerable<Outcome> outcomes, double seconds)
    {
        var latencies = new List<double>();
        var failed = 0;
        string? firstError = null;
        foreach (var outcome in outcomes)
        {
            if (outcome.Latency is { } latency)
                latencies.Add(latency);
            else
            {
                failed++;
                firstError ??= outcome.Error;
            }
        }
        return new Phase(latencies, failed, seconds, firstError);
    }

    /// <summary>The targets in turn, so several backends share the load as a round-robin router spreads it.</summary>
    private Uri Next() => targets[(int)((uint)Interlocked.Increment(ref _turn) % (uint)targets.Count)];

    private HttpRequestMessage Request(Uri target) =>
        new(HttpMethod.Post, target) { Content = new ByteArrayContent(body) { Headers = { ContentType = Json } } };

    private async Task<Outcome> SendAsync(CancellationToken cancellationToken)
    {
        var sent = Stopwatch.GetTimestamp();
        try
        {
            using var request = Request(Next());
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken);
            return response.IsSuccessStatusCode
                ? new Outcome(Stopwatch.GetElapsedTime(sent).TotalSeconds, null)
                : new Outcome(null, $"HTTP {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync(cancellationToken)}");
        }
        catch (HttpRequestException e)
        {
            return new Outcome(null, e.Message);
        }
    }
}
