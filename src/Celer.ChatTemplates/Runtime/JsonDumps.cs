using System.Globalization;
using System.Text;

namespace Celer.ChatTemplates.Runtime;

/// <summary>
/// Python's <c>json.dumps</c>, byte for byte, because transformers' <c>tojson</c> filter is
/// <c>json.dumps(x, ensure_ascii=False, indent=indent, separators=separators, sort_keys=sort_keys)</c>
/// and tool schemas rendered with it end up verbatim in the prompt.
/// </summary>
internal sealed class JsonDumps
{
    private readonly string? _indent;
    private readonly string _itemSeparator;
    private readonly string _keySeparator;
    private readonly bool _sortKeys;
    private readonly bool _ensureAscii;
    private readonly StringBuilder _sb = new();

    private JsonDumps(string? indent, string itemSeparator, string keySeparator, bool sortKeys, bool ensureAscii)
    {
        _indent = indent;
        _itemSeparator = itemSeparator;
        _keySeparator = keySeparator;
        _sortKeys = sortKeys;
        _ensureAscii = ensureAscii;
    }

    /// <param name="indent">null, an int (spaces) or a string, as Python accepts.</param>
    /// <param name="separators">null or a 2-item list/tuple (item separator, key separator).</param>
    public static string Dumps(object? value, object? indent = null, object? separators = null, bool sortKeys = false, bool ensureAscii = false)
    {
        var indentText = indent switch
        {
            null => null,
            long n => Filters.Spaces(n),
            string s => s,
            _ => throw new TemplateRenderException($"indent must be an int or a string, not {PyOps.TypeName(indent)}"),
        };
        // Python's default separators depend on indent: (', ', ': ') inline, (',', ': ') when pretty-printing.
        string item = indentText is null ? ", " : ",", key = ": ";
        if (separators is not null)
        {
            if (separators is not IReadOnlyList<object?> { Count: 2 } pair || pair[0] is not string a || pair[1] is not string b)
                throw new TemplateRenderException("separators must be a (item_separator, key_separator) pair of strings");
            (item, key) = (a, b);
        }
        var dumper = new JsonDumps(indentText, item, key, sortKeys, ensureAscii);
        dumper.Write(value, 0);
        return dumper._sb.ToString();
    }

    private void Write(object? value, int level)
    {
        switch (value)
        {
            case null: _sb.Append("null"); break;
            case bool b: _sb.Append(b ? "true" : "false"); break;
            case long l: _sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: _sb.Append(FloatText(d)); break;
            case string s: WriteString(s); break;
            case IReadOnlyList<object?> list: WriteList(list, level); break;
            case PyDict dict: WriteDict(dict, level); break;
            default:
                throw new TemplateRenderException($"Object of type {PyOps.TypeName(value)} is not JSON serializable");
        }
    }

    private static string FloatText(double d) =>
        double.IsNaN(d) ? "NaN" : double.IsPositiveInfinity(d) ? "Infinity" : double.IsNegativeInfinity(d) ? "-Infinity" : PyOps.FloatRepr(d);

    private void WriteList(IReadOnlyList<object?> list, int level)
    {
        if (list.Count == 0)
        {
            _sb.Append("[]");
            return;
        }
        _sb.Append('[');
        for (var i = 0; i < list.Count; i++)
        {
            if (i > 0) _sb.Append(_itemSeparator);
            NewLine(level + 1);
            Write(list[i], level + 1);
        }
        NewLine(level);
        _sb.Append(']');
    }

    private void WriteDict(PyDict dict, int level)
    {
        if (dict.Count == 0)
        {
            _sb.Append("{}");
            return;
        }
        IEnumerable<KeyValuePair<object, object?>> entries = dict;
        if (_sortKeys) entries = dict.OrderBy(kv => kv.Key, Comparer<object>.Create((a, b) => PyOps.Compare(a, b, "<")));
        _sb.Append('{');
        var first = true;
        foreach (var (k, v) in entries)
        {
            if (!first) _sb.Append(_itemSeparator);
            first = false;
            NewLine(level + 1);
            WriteString(KeyText(k));
            _sb.Append(_keySeparator);
            Write(v, level + 1);
        }
        NewLine(level);
        _sb.Append('}');
    }

    private static string KeyText(object key) => key switch
    {
        string s => s,
        bool b => b ? "true" : "false",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FloatText(d),
        _ => throw new TemplateRenderException($"keys must be str, int, float, bool or None, not {PyOps.TypeName(key)}"),
    };

    private void NewLine(int level)
    {
        if (_indent is null) return;
        ValueBudget.Chars(_sb.Length + 1 + (long)level * _indent.Length);
        _sb.Append('\n');
        for (var i = 0; i < level; i++) _sb.Append(_indent);
    }

    private void WriteString(string s)
    {
        _sb.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': _sb.Append("\\\""); break;
                case '\\': _sb.Append("\\\\"); break;
                case '\n': _sb.Append("\\n"); break;
                case '\r': _sb.Append("\\r"); break;
                case '\t': _sb.Append("\\t"); break;
                case '\b': _sb.Append("\\b"); break;
                case '\f': _sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || (_ensureAscii && c > 0x7e))
                        _sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    else
                        _sb.Append(c);
                    break;
            }
        }
        _sb.Append('"');
    }
}
