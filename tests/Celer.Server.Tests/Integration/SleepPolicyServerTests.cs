using System.Net;
using System.Text.Json.Nodes;
using Celer.Engine.Execution;
using Celer.Server.Tests.Support;
using Microsoft.AspNetCore.Builder;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// Three sleep-mode models in one server on a device that holds two (a <see cref="SimulatedDevice"/> under the real CPU
/// runners): a request for the sleeping one puts the least recently used idle model to sleep and wakes it; while both
/// others are busy, requests for it wait and an explicit <c>/wake_up</c> gets a 503, until one of them goes idle.
/// </summary>
public sealed class SleepPolicyServerTests : IAsyncLifetime
{
    private const long ModelBytes = 1L << 30;
    private static readonly string[] Names = ["a", "b", "c"];

    private readonly SimulatedDevice _device = new(2 * ModelBytes);
    private readonly List<LoadedModel> _models = [];
    private readonly Dictionary<string, InterceptingExecutor> _gates = [];
    private WebApplication? _app;
    private HttpClient _http = null!;

    public async ValueTask InitializeAsync()
    {
        var options = new ServerOptions { Port = 0, LogLevel = Microsoft.Extensions.Logging.LogLevel.None };
        var toServe = new List<ModelToServe>();
        foreach (string name in Names)
        {
            if (name == "c")
            {
                // The device holds two: the first sleeps before the third loads, as celer serve does with sleep-mode models.
                await _models[0].Engine.SleepAsync(1);
            }

            var loaded = ModelLoader.Load(
                MultiModelFixture.Args(ServerFixture.DefaultModel, name, MultiModelFixture.TinyMaxModelLen) with { EnableSleepMode = true },
                wrapExecutor: runner => _gates[name] = new InterceptingExecutor(new SharedDeviceExecutor(runner, _device, ModelBytes)));
            _models.Add(loaded);
            toServe.Add(new ModelToServe(loaded, options with { ServedModelNames = [name] }));
        }

        _app = CelerServer.Build(options, toServe);
        await _app.StartAsync();
        _http = new HttpClient { BaseAddress = CelerServer.GetBoundAddress(_app), Timeout = TimeSpan.FromSeconds(60) };
    }

    public async ValueTask DisposeAsync()
    {
        foreach (InterceptingExecutor gate in _gates.Values)
            gate.Open();
        _http.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        foreach (LoadedModel model in _models)
            await model.DisposeAsync();
    }

    private async Task<string> CompleteAsync(string model, int maxTokens = 8)
    {
        using var response = await _http.PostJsonAsync("/v1/completions",
            new JsonObject { ["model"] = model, ["prompt"] = "def add(a, b):", ["max_tokens"] = maxTokens, ["temperature"] = 0 }.ToJsonString());
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return JsonNode.Parse(await response.Content.ReadAsStringAsync(TestContext.Current.CancellationToken))!["choices"]![0]!["text"]!.GetValue<string>();
    }

    private async Task<bool> IsSleepingAsync(string model) =>
        JsonNode.Parse(await _http.GetStringAsync(new Uri($"/is_sleeping?model={model}", UriKind.Relative), TestContext.Current.CancellationToken))!["is_sleeping"]!.GetValue<bool>();

    /// <summary>Each model's state in order: S asleep, - awake.</summary>
    private async Task<string> SleepersAsync()
    {
        var states = new List<char>();
        foreach (string name in Names)
            states.Add(await IsSleepingAsync(name) ? 'S' : '-');
        return new string([.. states]);
    }

    [Fact]
    public async Task The_least_recently_used_idle_model_sleeps_so_a_sleeping_one_can_wake_and_busy_ones_are_waited_for()
    {
        var ct = TestContext.Current.CancellationToken;
        Assert.Equal("S--", await SleepersAsync());
        string answer = await CompleteAsync("b");
        Assert.Equal(answer, await CompleteAsync("c"));   // c was used last: b is the least recently used

        Assert.Equal(answer, await CompleteAsync("a"));
        Assert.Equal("-S-", await SleepersAsync());

        // a and c busy: a request for b waits, and so does an explicit wake-up, with a 503.
        _gates["a"].Close();
        _gates["c"].Close();
        Task<string> busyA = CompleteAsync("a", maxTokens: 4);
        Task<string> busyC = CompleteAsync("c", maxTokens: 4);
        await Task.Delay(200, ct);
        Task<string> forB = CompleteAsync("b");
        await Task.Delay(300, ct);
        Assert.False(forB.IsCompleted);
        using (var wake = await _http.PostAsync(new Uri("/wake_up?model=b", UriKind.Relative), null, ct))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, wake.StatusCode);
            Assert.Contains("serving requests", await wake.Content.ReadAsStringAsync(ct), StringComparison.Ordinal);
        }

        _gates["c"].Open();   // c finishes and goes idle: it is the one that sleeps for b
        Assert.Equal(answer[..4], (await busyC.WaitAsync(TimeSpan.FromSeconds(30), ct))[..4]);
        Assert.Equal(answer, await forB.WaitAsync(TimeSpan.FromSeconds(30), ct));
        Assert.Equal("--S", await SleepersAsync());
        _gates["a"].Open();
        await busyA.WaitAsync(TimeSpan.FromSeconds(30), ct);
        Assert.True(_device.Free >= 0);
    }
}
