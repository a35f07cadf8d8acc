using System.Text.Json.Nodes;
using Celer.Router;
using Celer.Server.Tests.Router;
using Celer.TestSupport;

namespace Celer.Server.Tests.Integration;

/// <summary>
/// <c>deploy/grafana/celer-dashboard.json</c> against the real server's <c>/metrics</c> and a real <c>celer router</c>'s
/// in front of it: every query's metrics must all be series one of the two exports, and the file must have the shape
/// Grafana imports (panels with unique ids, titles, the datasource variable, targets with refId and expr).
/// </summary>
[Collection(ServerCollection.Name)]
public sealed class GrafanaDashboardTests(ServerFixture server)
{
    private static string DashboardPath => Path.Combine(RepoPaths.Root, "deploy", "grafana", "celer-dashboard.json");

    /// <summary>What the issue asks the dashboard to show; an empty or gutted dashboard must not pass.</summary>
    private static readonly string[] RequiredSeries =
    [
        "vllm:time_to_first_token_seconds_bucket",
        "vllm:inter_token_latency_seconds_bucket",
        "vllm:e2e_request_latency_seconds_bucket",
        "vllm:prompt_tokens_total",
        "vllm:generation_tokens_total",
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:prefix_cache_hits_total",
        "vllm:prefix_cache_queries_total",
        "vllm:num_preemptions_total",
        "vllm:request_success_total",
        // The router's: QPS, time to first byte and health per backend, and what is in flight (production-stack's names).
        "celer_router_requests_total",
        "celer_router_time_to_first_byte_seconds_bucket",
        "celer_router_backend_healthy",
        "vllm:current_qps",
        "vllm:num_prefill_requests",
        "vllm:num_decoding_requests",
    ];

    /// <summary>The router's series with a <c>model</c> label, which a panel filters on the model variable as the servers' on <c>model_name</c>.</summary>
    private static readonly string[] RouterSeriesWithModel =
        ["celer_router_requests_total", "celer_router_retries_total", "celer_router_time_to_first_byte_seconds"];

    [Fact]
    public async Task Every_metric_the_dashboard_queries_is_exported_by_the_live_server()
    {
        using (var client = server.CreateClient())
        {
            await HttpApiTests.PostOkAsync(client, "/v1/completions", """{"prompt": "Grafana reads this", "max_tokens": 4, "temperature": 0, "ignore_eos": true}""");
            await HttpApiTests.PostOkAsync(client, "/v1/chat/completions", """{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "temperature": 0}""");
        }

        // A router in front of the same server, with a request through it, so its per-backend series have values.
        await using var router = await RouterUnderTest.StartAsync(
            [BackendSpec.Parse($"{server.BaseAddress},{ServerFixture.ModelName}")], RoutingLogic.RoundRobin, healthCheckInterval: TimeSpan.FromHours(1));
        using (var routed = await router.PostAsync("/v1/completions", """{"prompt": "Routed", "max_tokens": 2, "temperature": 0}""",
                   ("Authorization", $"Bearer {ServerFixture.ApiKey}")))
            Assert.Equal(System.Net.HttpStatusCode.OK, routed.StatusCode);

        string exposition;
        using (var scraper = server.CreateClient(authorized: false))
            exposition = await scraper.GetStringAsync("/metrics", TestContext.Current.CancellationToken);
        var exported = PromQl.SampleNames(exposition);
        Assert.Contains("vllm:time_to_first_token_seconds_bucket", exported);
        var routerExported = PromQl.SampleNames(await router.Client.GetStringAsync("/metrics", TestContext.Current.CancellationToken));
        Assert.Contains("celer_router_requests_total", routerExported);

        var queries = DashboardQueries(LoadDashboard()).ToList();
        Assert.True(queries.Count >= 20, $"only {queries.Count} queries in the dashboard");
        var referenced = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (where, query) in queries)
        {
            var names = PromQl.MetricNames(query);
            Assert.True(names.Count > 0, $"{where}: no metric name found in `{query}`");
            // One query reads one kind of target: a server's series and a router's never meet in one expression.
            var missing = names.Where(n => !exported.Contains(n)).ToList();
            var missingFromRouter = names.Where(n => !routerExported.Contains(n)).ToList();
            Assert.True(missing.Count == 0 || missingFromRouter.Count == 0,
                $"{where}: `{query}` reads {string.Join(", ", missing)}, which the server's /metrics does not export, and {string.Join(", ", missingFromRouter)}, which the router's does not");
            referenced.UnionWith(names);
        }

        var absent = RequiredSeries.Where(s => !referenced.Contains(s)).ToList();
        Assert.True(absent.Count == 0, $"the dashboard shows nothing of {string.Join(", ", absent)}");
    }

    [Fact]
    public void The_dashboard_has_grafanas_shape()
    {
        var dashboard = LoadDashboard();
        Assert.False(string.IsNullOrWhiteSpace(dashboard["title"]?.GetValue<string>()), "dashboard title");
        Assert.False(string.IsNullOrWhiteSpace(dashboard["uid"]?.GetValue<string>()), "dashboard uid");
        Assert.NotNull(dashboard["schemaVersion"]);

        var variables = dashboard["templating"]!["list"]!.AsArray().Select(v => v!.AsObject()).ToList();
        var datasource = Assert.Single(variables, v => v["name"]!.GetValue<string>() == "datasource");
        Assert.Equal("datasource", datasource["type"]!.GetValue<string>());
        Assert.Equal("prometheus", datasource["query"]!.GetValue<string>());
        var model = Assert.Single(variables, v => v["name"]!.GetValue<string>() == "model_name");
        Assert.Equal("query", model["type"]!.GetValue<string>());
        Assert.StartsWith("label_values(", VariableQuery(model), StringComparison.Ordinal);
        Assert.EndsWith(", model_name)", VariableQuery(model), StringComparison.Ordinal);
        foreach (var variable in variables.Where(v => v["type"]!.GetValue<string>() == "query"))
            Assert.Equal("${datasource}", variable["datasource"]?["uid"]?.GetValue<string>());
        var backend = Assert.Single(variables, v => v["name"]!.GetValue<string>() == "backend");
        Assert.Equal("label_values(celer_router_backend_healthy, backend)", VariableQuery(backend));

        var panels = AllPanels(dashboard["panels"]!.AsArray()).ToList();
        var ids = new HashSet<int>();
        var graphs = 0;
        foreach (var panel in panels)
        {
            var id = panel["id"]!.GetValue<int>();
            var title = panel["title"]?.GetValue<string>();
            Assert.False(string.IsNullOrWhiteSpace(title), $"panel {id} has no title");
            Assert.True(ids.Add(id), $"panel id {id} ({title}) is used twice");
            Assert.NotNull(panel["gridPos"]);
            if (panel["type"]!.GetValue<string>() == "row")
                continue;
            graphs++;
            Assert.True(panel["datasource"]?["uid"]?.GetValue<string>() == "${datasource}", $"{title}: datasource is not the variable");
            var targets = panel["targets"]!.AsArray();
            Assert.True(targets.Count > 0, $"{title}: no targets");
            var refIds = new HashSet<string>();
            foreach (var target in targets)
            {
                var refId = target!["refId"]?.GetValue<string>();
                Assert.False(string.IsNullOrEmpty(refId), $"{title}: a target has no refId");
                Assert.True(refIds.Add(refId!), $"{title}: refId {refId} is used twice");
                var expr = target["expr"]?.GetValue<string>();
                Assert.False(string.IsNullOrWhiteSpace(expr), $"{title}/{refId}: no expr");
                // The servers' series carry model_name; the router's the backend (production-stack's as server) and, on
                // requests, model: each query follows the variables its series can.
                var filtersServers = expr!.Contains("model_name=~\"$model_name\"", StringComparison.Ordinal);
                var filtersRouter = expr.Contains("backend=~\"$backend\"", StringComparison.Ordinal) || expr.Contains("server=~\"$backend\"", StringComparison.Ordinal);
                Assert.True(filtersServers || filtersRouter, $"{title}/{refId}: filtered on neither $model_name nor $backend");
                if (PromQl.MetricNames(expr).Any(n => RouterSeriesWithModel.Any(r => n.StartsWith(r, StringComparison.Ordinal))))
                    Assert.True(expr.Contains("model=~\"$model_name\"", StringComparison.Ordinal), $"{title}/{refId}: the router's requests not filtered on $model_name");
                Assert.True(target["datasource"]?["uid"]?.GetValue<string>() is null or "${datasource}", $"{title}/{refId}: datasource is not the variable");
            }
        }
        Assert.True(graphs >= 9, $"only {graphs} graph panels");
        // The collapsed row keeps its panels nested: the walk must have reached them.
        Assert.Contains(panels, p => p["title"]!.GetValue<string>() == "Queue time");
        Assert.Contains(panels, p => p["title"]!.GetValue<string>() == "Router QPS per backend");
    }

    // The extractor's own cases: a checker that finds no names, or every name, would pass anything.

    [Theory]
    [InlineData(
        """histogram_quantile(0.99, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket{model_name=~"$model_name", le!="+Inf"}[5m])))""",
        "vllm:time_to_first_token_seconds_bucket")]
    [InlineData(
        """sum(rate(a_total{x="rate(b_total)", y='}'}[$__rate_interval])) / sum(rate(c_total[5m] offset 1h)) by (instance, job)""",
        "a_total c_total")]
    [InlineData(
        """sum without (engine) (vllm:num_requests_running) + on (model_name) group_left (instance) vllm:num_requests_waiting * 1e-3 > bool 0.5""",
        "vllm:num_requests_running vllm:num_requests_waiting")]
    [InlineData(
        """vllm:kv_cache_usage_perc{model_name="${model_name}"} and ignoring(engine) $threshold unless max_over_time(up[1h:5m]) or vector(Inf)""",
        "vllm:kv_cache_usage_perc up")]
    [InlineData(
        """label_replace(process_cpu_seconds_total, "dst", "$1", "src", "(.*)") # a comment naming not_a_metric""",
        "process_cpu_seconds_total")]
    [InlineData("""label_values(vllm:num_requests_running{model_name=~"$model_name"}, instance)""", "vllm:num_requests_running")]
    [InlineData("label_values(model_name)", "")]
    [InlineData("""rate(foo_total[5m] @ end()) - rate(bar:baz_total[[interval]])""", "foo_total bar:baz_total")]
    public void The_extractor_finds_exactly_the_metric_names(string query, string expected)
    {
        var names = PromQl.MetricNames(query);
        var want = expected.Split(' ', StringSplitOptions.RemoveEmptyEntries).ToHashSet();
        Assert.True(want.SetEquals(names), $"`{query}`: found {{{string.Join(", ", names)}}}, expected {{{string.Join(", ", want)}}}");
    }

    [Fact]
    public void A_wrong_metric_name_is_reported_missing()
    {
        const string exposition = """
            # HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
            # TYPE vllm:time_to_first_token_seconds histogram
            vllm:time_to_first_token_seconds_sum{model_name="m",engine="0"} 0.5
            vllm:time_to_first_token_seconds_count{model_name="m",engine="0"} 2
            vllm:time_to_first_token_seconds_bucket{model_name="m",engine="0",le="+Inf"} 2
            vllm:num_requests_running{model_name="m",engine="0"} 0
            """;
        var exported = PromQl.SampleNames(exposition);
        Assert.Equal(
            ["vllm:num_requests_running", "vllm:time_to_first_token_seconds_bucket", "vllm:time_to_first_token_seconds_count", "vllm:time_to_first_token_seconds_sum"],
            exported.Order(StringComparer.Ordinal));

        var names = PromQl.MetricNames(
            """histogram_quantile(0.9, sum by (le) (rate(vllm:time_to_first_token_seconds_bucket[5m]))) + vllm:num_requests_runing + vllm:time_to_first_token_seconds""");
        Assert.Equal(
            ["vllm:num_requests_runing", "vllm:time_to_first_token_seconds"],
            names.Where(n => !exported.Contains(n)).Order(StringComparer.Ordinal));
    }

    private static JsonObject LoadDashboard() => JsonNode.Parse(File.ReadAllText(DashboardPath))!.AsObject();

    /// <summary>Every panel, rows' nested panels (a collapsed row holds its own) included.</summary>
    private static IEnumerable<JsonObject> AllPanels(JsonArray panels)
    {
        foreach (var panel in panels.Select(p => p!.AsObject()))
        {
            yield return panel;
            if (panel["panels"] is JsonArray nested)
            {
                foreach (var inner in AllPanels(nested))
                    yield return inner;
            }
        }
    }

    private static string VariableQuery(JsonObject variable) =>
        variable["query"] is JsonObject q ? q["query"]!.GetValue<string>() : variable["query"]!.GetValue<string>();

    /// <summary>Each PromQL query in the dashboard with where it is: panel targets and query variables.</summary>
    private static IEnumerable<(string Where, string Query)> DashboardQueries(JsonObject dashboard)
    {
        foreach (var panel in AllPanels(dashboard["panels"]!.AsArray()))
        {
            foreach (var target in panel["targets"]?.AsArray() ?? new JsonArray())
                yield return ($"{panel["title"]}/{target!["refId"]}", target["expr"]!.GetValue<string>());
        }
        foreach (var variable in dashboard["templating"]!["list"]!.AsArray().Select(v => v!.AsObject()))
        {
            if (variable["type"]!.GetValue<string>() == "query")
                yield return ($"${variable["name"]}", VariableQuery(variable));
        }
    }
}

/// <summary>
/// Just enough PromQL lexing to list the metric names a query selects: string literals, label matchers
/// (<c>{…}</c>), ranges and subqueries (<c>[…]</c>), numbers and durations, comments, Grafana variables
/// (<c>$x</c>, <c>${x}</c>, <c>[[x]]</c>), keywords and the label lists after by/without/on/ignoring/group_left/
/// group_right are skipped; an identifier followed by <c>(</c> is a function. Grafana's
/// <c>label_values(selector, label)</c> has its label argument dropped.
/// </summary>
internal static class PromQl
{
    private static readonly HashSet<string> Keywords = new(StringComparer.OrdinalIgnoreCase)
    {
        "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
    };

    private static readonly HashSet<string> LabelListKeywords = new(StringComparer.OrdinalIgnoreCase)
    {
        "by", "without", "on", "ignoring", "group_left", "group_right",
    };

    public static HashSet<string> MetricNames(string query)
    {
        var trimmed = query.Trim();
        if (trimmed.StartsWith("label_values(", StringComparison.Ordinal) && trimmed.EndsWith(')'))
        {
            var args = trimmed["label_values(".Length..^1];
            var comma = LastTopLevelComma(args);
            // label_values(label) names no metric.
            query = comma < 0 ? "" : args[..comma];
        }

        var names = new HashSet<string>(StringComparer.Ordinal);
        var s = query;
        int i = 0;
        while (i < s.Length)
        {
            var c = s[i];
            if (char.IsWhiteSpace(c))
            {
                i++;
            }
            else if (c is '"' or '\'' or '`')
            {
                i = SkipString(s, i);
            }
            else if (c == '#')
            {
                while (i < s.Length && s[i] != '\n')
                    i++;
            }
            else if (c == '{')
            {
                i = SkipGroup(s, i, '{', '}');
            }
            else if (c == '[')
            {
                i = SkipGroup(s, i, '[', ']');
            }
            else if (c == '$')
            {
                i++;
                if (i < s.Length && s[i] == '{')
                    i = SkipGroup(s, i, '{', '}');
                else
                    while (i < s.Length && (char.IsAsciiLetterOrDigit(s[i]) || s[i] == '_'))
                        i++;
            }
            else if (char.IsAsciiDigit(c) || (c == '.' && i + 1 < s.Length && char.IsAsciiDigit(s[i + 1])))
            {
                // Numbers (1, 0.5, 1e-3, 0x1f) and durations (5m, 1h30m).
                var hex = c == '0' && i + 1 < s.Length && s[i + 1] is 'x' or 'X';
                while (i < s.Length)
                {
                    if (char.IsAsciiLetterOrDigit(s[i]) || s[i] == '.' || s[i] == '_')
                    {
                        i++;
                    }
                    else if (!hex && (s[i] == '+' || s[i] == '-') && (s[i - 1] == 'e' || s[i - 1] == 'E') && i + 1 < s.Length && char.IsAsciiDigit(s[i + 1]))
                    {
                        i++;
                    }
                    else
                    {
                        break;
                    }
                }
            }
            else if (char.IsAsciiLetter(c) || c is '_' or ':')
            {
                int start = i;
                while (i < s.Length && (char.IsAsciiLetterOrDigit(s[i]) || s[i] is '_' or ':'))
                    i++;
                var word = s[start..i];
                int next = i;
                while (next < s.Length && char.IsWhiteSpace(s[next]))
                    next++;
                if (LabelListKeywords.Contains(word))
                {
                    if (next < s.Length && s[next] == '(')
                        i = SkipGroup(s, next, '(', ')');
                }
                else if (Keywords.Contains(word) || (next < s.Length && s[next] == '(') || StartsAggregationClause(s, next))
                {
                    // A keyword, a function name, or an aggregation (sum, topk, …) whose by/without clause comes first.
                }
                else
                {
                    names.Add(word);
                }
            }
            else
            {
                // Operators, parentheses, commas, '@'.
                i++;
            }
        }
        return names;
    }

    /// <summary>The sample names of a Prometheus text exposition: histograms as their _bucket, _sum and _count series.</summary>
    public static HashSet<string> SampleNames(string exposition)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var raw in exposition.Split('\n'))
        {
            var line = raw.Trim();
            if (line.Length == 0 || line[0] == '#')
                continue;
            var end = line.IndexOfAny(['{', ' ']);
            names.Add(end < 0 ? line : line[..end]);
        }
        return names;
    }

    /// <summary>Whether <c>by</c> or <c>without</c> starts at <paramref name="i"/>: after a word, that makes the word an aggregation.</summary>
    private static bool StartsAggregationClause(string s, int i)
    {
        foreach (var keyword in (ReadOnlySpan<string>)["by", "without"])
        {
            var end = i + keyword.Length;
            if (string.Compare(s, i, keyword, 0, keyword.Length, StringComparison.OrdinalIgnoreCase) == 0
                && (end == s.Length || !(char.IsAsciiLetterOrDigit(s[end]) || s[end] is '_' or ':')))
                return true;
        }
        return false;
    }

    private static int SkipString(string s, int i)
    {
        var quote = s[i++];
        while (i < s.Length && s[i] != quote)
            i += s[i] == '\\' && quote != '`' ? 2 : 1;
        return Math.Min(i + 1, s.Length);
    }

    /// <summary>The index past the bracket that closes the one at <paramref name="i"/>, stepping over strings and nesting.</summary>
    private static int SkipGroup(string s, int i, char open, char close)
    {
        int depth = 0;
        while (i < s.Length)
        {
            var c = s[i];
            if (c is '"' or '\'' or '`')
            {
                i = SkipString(s, i);
                continue;
            }
            if (c == open)
                depth++;
            else if (c == close && --depth == 0)
                return i + 1;
            i++;
        }
        return i;
    }

    private static int LastTopLevelComma(string s)
    {
        int depth = 0, last = -1;
        for (int i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (c is '"' or '\'' or '`')
            {
                i = SkipString(s, i) - 1;
                continue;
            }
            if (c is '(' or '{' or '[')
                depth++;
            else if (c is ')' or '}' or ']')
                depth--;
            else if (c == ',' && depth == 0)
                last = i;
        }
        return last;
    }
}
