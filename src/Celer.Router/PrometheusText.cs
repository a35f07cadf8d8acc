using System.Globalization;

namespace Celer.Router;

/// <summary>One sample of a Prometheus exposition: the series (metric name and labels) and its value.</summary>
public sealed record PrometheusSample(string Name, IReadOnlyDictionary<string, string> Labels, double Value);

/// <summary>
/// Reads Prometheus' text exposition format (0.0.4), what vLLM's and Celer's <c>GET /metrics</c> write:
/// <c>name{label="value",...} value [timestamp]</c> per line, <c>#</c> lines (HELP, TYPE, others) and blank lines
/// skipped, label values with the escapes <c>\\</c>, <c>\"</c> and <c>\n</c>, values that may be <c>NaN</c>, <c>+Inf</c>
/// or <c>-Inf</c>. One malformed line fails the whole text, as it fails a Prometheus scrape: numbers summed from part of
/// an exposition could be silently wrong.
/// </summary>
public static class PrometheusText
{
    /// <exception cref="FormatException">A line is not a comment, blank or a well-formed sample; the message names the line.</exception>
    public static IReadOnlyList<PrometheusSample> Parse(string text)
    {
        var samples = new List<PrometheusSample>();
        var lineNumber = 0;
        var start = 0;
        while (start <= text.Length)
        {
            // Lines end at '\n' only: a label value may hold other line separators (U+2028) as they are.
            var end = text.IndexOf('\n', start);
            if (end < 0)
                end = text.Length;
            lineNumber++;
            var line = text.AsSpan(start, end - start).TrimEnd('\r').Trim(" \t");
            if (line.Length > 0 && line[0] != '#')
                samples.Add(ParseSample(line, lineNumber));
            start = end + 1;
        }
        return samples;
    }

    private static PrometheusSample ParseSample(ReadOnlySpan<char> line, int lineNumber)
    {
        var position = 0;
        var name = ReadName(line, ref position, metric: true) ?? throw Malformed(lineNumber, "no metric name", line);
        var blanks = SkipBlanks(line, ref position);
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        var braced = position < line.Length && line[position] == '{';
        if (braced)
        {
            position++;
            ReadLabels(line, ref position, labels, lineNumber);
            blanks = SkipBlanks(line, ref position);
        }

        var valueToken = ReadToken(line, ref position);
        if (valueToken.Length == 0)
            throw Malformed(lineNumber, "no value", line);
        if (!braced && blanks == 0)
            throw Malformed(lineNumber, "no blank between the name and the value", line);
        var value = ParseValue(valueToken) ?? throw Malformed(lineNumber, "the value is not a number", line);
        SkipBlanks(line, ref position);
        var timestamp = ReadToken(line, ref position);
        if (timestamp.Length > 0 && !long.TryParse(timestamp, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _))
            throw Malformed(lineNumber, "the timestamp is not an integer", line);
        SkipBlanks(line, ref position);
        if (position < line.Length)
            throw Malformed(lineNumber, "text after the value and timestamp", line);
        return new PrometheusSample(name, labels, value);
    }

    /// <summary>Reads <c>name="value", ...}</c> (a trailing comma is allowed) after the opening brace.</summary>
    private static void ReadLabels(ReadOnlySpan<char> line, ref int position, Dictionary<string, string> labels, int lineNumber)
    {
        while (true)
        {
            SkipBlanks(line, ref position);
            if (position < line.Length && line[position] == '}')
            {
                position++;
                return;
            }
            var label = ReadName(line, ref position, metric: false) ?? throw Malformed(lineNumber, "a label name was expected", line);
            SkipBlanks(line, ref position);
            if (position >= line.Length || line[position] != '=')
                throw Malformed(lineNumber, $"'=' was expected after the label {label}", line);
            position++;
            SkipBlanks(line, ref position);
            var value = ReadQuoted(line, ref position, lineNumber);
            if (!labels.TryAdd(label, value))
                throw Malformed(lineNumber, $"the label {label} appears twice", line);
            SkipBlanks(line, ref position);
            if (position < line.Length && line[position] == ',')
                position++;
            else if (position >= line.Length || line[position] != '}')
                throw Malformed(lineNumber, "',' or '}' was expected after a label", line);
        }
    }

    private static string ReadQuoted(ReadOnlySpan<char> line, ref int position, int lineNumber)
    {
        if (position >= line.Length || line[position] != '"')
            throw Malformed(lineNumber, "a label value must be quoted", line);
        position++;
        var value = new System.Text.StringBuilder();
        while (position < line.Length)
        {
            var c = line[position++];
            if (c == '"')
                return value.ToString();
            if (c != '\\')
            {
                value.Append(c);
                continue;
            }
            if (position >= line.Length)
                break;
            value.Append(line[position++] switch
            {
                '\\' => '\\',
                '"' => '"',
                'n' => '\n',
                var other => throw Malformed(lineNumber, $"the escape \\{other} is not one of \\\\, \\\" and \\n", line),
            });
        }
        throw Malformed(lineNumber, "a label value is not closed", line);
    }

    /// <summary>A metric name <c>[a-zA-Z_:][a-zA-Z0-9_:]*</c>, or a label name (the same without ':'); null when none starts here.</summary>
    private static string? ReadName(ReadOnlySpan<char> line, ref int position, bool metric)
    {
        var start = position;
        while (position < line.Length)
        {
            var c = line[position];
            var valid = char.IsAsciiLetter(c) || c == '_' || (metric && c == ':') || (position > start && char.IsAsciiDigit(c));
            if (!valid)
                break;
            position++;
        }
        return position > start ? line[start..position].ToString() : null;
    }

    private static ReadOnlySpan<char> ReadToken(ReadOnlySpan<char> line, ref int position)
    {
        var start = position;
        while (position < line.Length && line[position] is not (' ' or '\t'))
            position++;
        return line[start..position];
    }

    private static int SkipBlanks(ReadOnlySpan<char> line, ref int position)
    {
        var start = position;
        while (position < line.Length && line[position] is ' ' or '\t')
            position++;
        return position - start;
    }

    /// <summary>A float as Go's <c>ParseFloat</c> reads it (Prometheus' own parser): also <c>NaN</c> and <c>[+-]Inf</c> in any case.</summary>
    private static double? ParseValue(ReadOnlySpan<char> token)
    {
        var unsigned = token.TrimStart("+-");
        var negative = token.Length > 0 && token[0] == '-';
        if (unsigned.Length == token.Length - 1 || unsigned.Length == token.Length)
        {
            if (unsigned.Equals("Inf", StringComparison.OrdinalIgnoreCase) || unsigned.Equals("Infinity", StringComparison.OrdinalIgnoreCase))
                return negative ? double.NegativeInfinity : double.PositiveInfinity;
            if (unsigned.Equals("NaN", StringComparison.OrdinalIgnoreCase))
                return double.NaN;
        }
        return double.TryParse(token, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent,
            CultureInfo.InvariantCulture, out var value) ? value : null;
    }

    private static FormatException Malformed(int lineNumber, string what, ReadOnlySpan<char> line)
    {
        // A line of a broken exposition can be long (a huge label value); the start is enough to find it.
        const int Shown = 120;
        var text = line.Length <= Shown ? line.ToString() : string.Concat(line[..Shown], "…");
        return new FormatException($"line {lineNumber}: {what}: {text}");
    }
}
