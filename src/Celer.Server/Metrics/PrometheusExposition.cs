using System.Text;
using Prometheus;

namespace Celer.Server.Metrics;

/// <summary>
/// Writes the registry in Prometheus text format under the configured prefix. prometheus-net 8 only
/// accepts names matching <c>[a-zA-Z_][a-zA-Z0-9_]*</c>, but vLLM's names (and every dashboard built
/// on them) use a colon (<c>vllm:num_requests_running</c>), which the exposition format allows. So
/// metrics are registered under a sanitized prefix and the prefix is swapped back on the way out;
/// the registry holds nothing else, so every metric-name token starts with that prefix.
/// </summary>
internal sealed class PrometheusExposition
{
    public PrometheusExposition(string prefix)
    {
        Prefix = prefix;
        InternalPrefix = Sanitize(prefix);
        Registry = Prometheus.Metrics.NewCustomRegistry();
    }

    public CollectorRegistry Registry { get; }

    /// <summary>The prefix on the wire, e.g. <c>vllm:</c>.</summary>
    public string Prefix { get; }

    /// <summary>The same prefix with characters prometheus-net rejects replaced by '_'.</summary>
    public string InternalPrefix { get; }

    public async Task<string> ExportAsync(CancellationToken cancellationToken)
    {
        using var buffer = new MemoryStream();
        await Registry.CollectAndExportAsTextAsync(buffer, cancellationToken);
        var text = Encoding.UTF8.GetString(buffer.GetBuffer(), 0, (int)buffer.Length);
        return Prefix == InternalPrefix ? text : RestorePrefix(text);
    }

    internal string RestorePrefix(string text)
    {
        var output = new StringBuilder(text.Length);
        foreach (var line in text.Split('\n'))
        {
            if (output.Length > 0)
                output.Append('\n');
            // A sample line starts with the metric name; HELP and TYPE lines carry it after the keyword.
            var nameStart = line.StartsWith("# HELP ", StringComparison.Ordinal) || line.StartsWith("# TYPE ", StringComparison.Ordinal) ? 7 : 0;
            if (string.CompareOrdinal(line, nameStart, InternalPrefix, 0, InternalPrefix.Length) == 0)
                output.Append(line, 0, nameStart).Append(Prefix).Append(line, nameStart + InternalPrefix.Length, line.Length - nameStart - InternalPrefix.Length);
            else
                output.Append(line);
        }
        return output.ToString();
    }

    internal static string Sanitize(string prefix)
    {
        var chars = prefix.ToCharArray();
        for (var i = 0; i < chars.Length; i++)
        {
            var c = chars[i];
            var valid = c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or '_' || (i > 0 && c is >= '0' and <= '9');
            if (!valid)
                chars[i] = '_';
        }
        return new string(chars);
    }
}
