using System.Globalization;
using System.Text.RegularExpressions;

namespace Celer.ChatTemplates.Runtime;

/// <summary>
/// Jinja's built-in filters that chat templates use, plus transformers' own <c>tojson</c>
/// (<c>json.dumps(x, ensure_ascii=False, indent=..., separators=..., sort_keys=...)</c>, no HTML escaping).
/// </summary>
internal static partial class Filters
{
    private static readonly HashSet<string> Names =
    [
        "abs", "attr", "batch", "capitalize", "center", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
        "forceescape", "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
        "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum", "title",
        "tojson", "trim", "unique", "upper", "wordcount",
    ];

    public static bool Exists(string name) => Names.Contains(name);

    public static object? Apply(Interpreter interpreter, string name, object? v, IReadOnlyList<object?> args, IReadOnlyDictionary<string, object?> kwargs)
    {
        var a = new PyMethods.Args(name, args, kwargs);
        switch (name)
        {
            case "default":
            case "d":
                var useDefault = v is Undefined || (PyOps.IsTruthy(a.Get(1, "boolean")) && !PyOps.IsTruthy(v));
                return useDefault ? (args.Count > 0 || kwargs.ContainsKey("default_value") ? a.Get(0, "default_value") : "") : v;
            case "length":
            case "count":
                return PyOps.Length(v);
            case "string":
                return PyOps.Str(v);
            case "safe":
                return v;
            case "e":
            case "escape":
            case "forceescape":
                return HtmlEscape(PyOps.Str(v));
            case "trim":
                return PyMethods.Strip(PyOps.Str(v), a.Get(0, "chars"), true, true);
            case "upper":
                return PyOps.Str(v).ToUpperInvariant();
            case "lower":
                return PyOps.Str(v).ToLowerInvariant();
            case "capitalize":
                var cs = PyOps.Str(v);
                return cs.Length == 0 ? cs : char.ToUpperInvariant(cs[0]) + cs[1..].ToLowerInvariant();
            case "title":
                return Title(PyOps.Str(v));
            case "replace":
                return PyMethods.Replace(PyOps.Str(v), PyOps.Str(a.Required(0, "old")), PyOps.Str(a.Required(1, "new")), a.Int(2, "count", -1));
            case "wordcount":
                return (long)WordRegex().Count(PyOps.Str(v));
            case "center":
                return PyMethods.Call(PyOps.Str(v), "center", [a.Int(0, "width", 80)], new Dictionary<string, object?>());
            case "indent":
                return Indent(PyOps.Str(v), a.Get(0, "width") ?? 4L, PyOps.IsTruthy(a.Get(1, "first")), PyOps.IsTruthy(a.Get(2, "blank")));
            case "join":
                var attribute = a.Get(1, "attribute");
                var items = PyOps.Iterate(v).Select(x => attribute is null ? x : GetPath(x, attribute));
                return PyMethods.Join(PyOps.Str(a.Get(0, "d") ?? ""), items.Select(PyOps.Str).ToList());
            case "first":
                var firstItems = PyOps.Iterate(v);
                return firstItems.Count > 0 ? firstItems[0] : new Undefined("No first item, sequence was empty.");
            case "last":
                var lastItems = PyOps.Iterate(v);
                return lastItems.Count > 0 ? lastItems[^1] : new Undefined("No last item, sequence was empty.");
            case "list":
                return PyOps.Iterate(v).ToList();
            case "reverse":
                return v is string rs ? new string(rs.Reverse().ToArray()) : PyOps.Iterate(v).Reverse().ToList();
            case "items":
                return v is Undefined ? new List<object?>()
                    : v is PyDict d ? PyMethods.Call(d, "items", [], new Dictionary<string, object?>())
                    : throw new TemplateRenderException("Can only get item pairs from a mapping.");
            case "int":
                return ToInt(v, a.Get(0, "default") ?? 0L, a.Int(1, "base", 10));
            case "float":
                return ToFloat(v, a.Get(0, "default") ?? 0.0);
            case "abs":
                return v switch
                {
                    long l => (object)Math.Abs(l),
                    double f => Math.Abs(f),
                    bool b => b ? 1L : 0L,
                    _ => throw new TemplateRenderException($"bad operand type for abs(): '{PyOps.TypeName(v)}'"),
                };
            case "round":
                return Round(v, a.Int(0, "precision", 0), a.Get(1, "method") as string ?? "common");
            case "tojson":
                var ensureAscii = PyOps.IsTruthy(a.Get(0, "ensure_ascii"));
                return JsonDumps.Dumps(v, a.Get(1, "indent"), a.Get(2, "separators"), PyOps.IsTruthy(a.Get(3, "sort_keys")), ensureAscii);
            case "attr":
                return Interpreter.GetAttr(v, PyOps.Str(a.Required(0, "name")));
            case "batch":
                return Batch(v, a.Int(0, "linecount", 1), a.Get(1, "fill_with"), args.Count > 1 || kwargs.ContainsKey("fill_with"));
            case "map":
                return Map(interpreter, v, args, kwargs);
            case "select":
            case "reject":
                return SelectOrReject(interpreter, v, args, kwargs, null, name == "select");
            case "selectattr":
            case "rejectattr":
                if (args.Count == 0) throw new TemplateRenderException($"{name}() needs an attribute name");
                return SelectOrReject(interpreter, v, args.Skip(1).ToList(), kwargs, args[0], name == "selectattr");
            case "unique":
                return Unique(v, PyOps.IsTruthy(a.Get(0, "case_sensitive")), a.Get(1, "attribute"));
            case "sort":
                return Sort(v, PyOps.IsTruthy(a.Get(0, "reverse")), PyOps.IsTruthy(a.Get(1, "case_sensitive")), a.Get(2, "attribute"));
            case "dictsort":
                return DictSort(v, PyOps.IsTruthy(a.Get(0, "case_sensitive")), a.Get(1, "by") as string ?? "key", PyOps.IsTruthy(a.Get(2, "reverse")));
            case "min":
            case "max":
                var pool = PyOps.Iterate(v);
                if (pool.Count == 0) return new Undefined($"No aggregated item, sequence was empty.");
                var keyAttr = a.Get(1, "attribute");
                var caseSensitive = PyOps.IsTruthy(a.Get(0, "case_sensitive"));
                var ordered = pool.OrderBy(x => SortKey(x, caseSensitive, keyAttr), Comparer<object?>.Create((p, q) => PyOps.Compare(p, q, "<")));
                return name == "min" ? ordered.First() : ordered.Last();
            case "sum":
                var sumAttr = a.Get(0, "attribute");
                object? total = a.Get(1, "start") ?? 0L;
                foreach (var x in PyOps.Iterate(v)) total = PyOps.Add(total, sumAttr is null ? x : GetPath(x, sumAttr));
                return total;
            default:
                throw new TemplateRenderException($"No filter named '{name}'.");
        }
    }

    [GeneratedRegex(@"\w+")]
    private static partial Regex WordRegex();

    // Jinja's do_title splits before runs of whitespace and opening brackets/dashes, unlike str.title.
    [GeneratedRegex(@"([-\s({\[<]+)")]
    private static partial Regex WordBeginningRegex();

    private static string Title(string s) => string.Concat(WordBeginningRegex().Split(s)
        .Where(item => item.Length > 0)
        .Select(item => char.ToUpperInvariant(item[0]) + item[1..].ToLowerInvariant()));

    /// <summary>markupsafe.escape: the five HTML-special characters.</summary>
    private static string HtmlEscape(string s) => s
        .Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal).Replace(">", "&gt;", StringComparison.Ordinal)
        .Replace("\"", "&#34;", StringComparison.Ordinal).Replace("'", "&#39;", StringComparison.Ordinal);

    private static string Indent(string s, object? width, bool first, bool blank)
    {
        var indentation = width switch
        {
            string w => w,
            long n => Spaces(n),
            _ => throw new TemplateRenderException("indent width must be an int or a string"),
        };
        // Jinja appends a newline before splitlines() so a trailing newline survives.
        var lines = PyMethods.SplitLines(s + "\n", keepEnds: false);
        ValueBudget.Chars(s.Length + (long)lines.Count * indentation.Length);
        string rv;
        if (blank)
        {
            rv = string.Join("\n" + indentation, lines);
        }
        else
        {
            rv = lines[0];
            if (lines.Count > 1) rv += "\n" + string.Join("\n", lines.Skip(1).Select(l => l.Length > 0 ? indentation + l : l));
        }
        return first ? indentation + rv : rv;
    }

    private static object? ToInt(object? v, object? fallback, long numberBase)
    {
        switch (v)
        {
            case long l: return l;
            case bool b: return b ? 1L : 0L;
            case double d: return double.IsFinite(d) ? (long)Math.Truncate(d) : fallback;
            case string s:
                var t = s.Trim().Replace("_", "", StringComparison.Ordinal);
                try
                {
                    if (numberBase == 10 && long.TryParse(t, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var parsed)) return parsed;
                    if (numberBase != 10) return Convert.ToInt64(t, (int)numberBase);
                }
                catch (FormatException)
                {
                    return fallback;
                }
                // Jinja's do_int falls back to int(float(value)), so "3.7" becomes 3.
                return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out var f) && double.IsFinite(f) ? (long)Math.Truncate(f) : fallback;
            default: return fallback;
        }
    }

    private static object? ToFloat(object? v, object? fallback) => v switch
    {
        double d => d,
        long l => (double)l,
        bool b => b ? 1.0 : 0.0,
        string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var f) => f,
        _ => fallback,
    };

    private static double Round(object? v, long precision, string method)
    {
        var x = v is long or double or bool ? PyOps.ToDouble(v) : throw new TemplateRenderException($"round needs a number, got {PyOps.TypeName(v)}");
        var scale = Math.Pow(10, precision);
        return method switch
        {
            // Jinja's "common" is Python's round(), which rounds half to even on the binary value.
            "common" => Math.Round(x, (int)Math.Clamp(precision, 0, 15), MidpointRounding.ToEven),
            "ceil" => Math.Ceiling(x * scale) / scale,
            "floor" => Math.Floor(x * scale) / scale,
            _ => throw new TemplateRenderException("method must be common, ceil or floor"),
        };
    }

    /// <summary>n spaces (an indent), within the value budget.</summary>
    internal static string Spaces(long n)
    {
        ValueBudget.Chars(n);
        return new string(' ', (int)Math.Max(0, n));
    }

    private static List<object?> Batch(object? v, long size, object? fill, bool hasFill)
    {
        if (size <= 0) throw new TemplateRenderException("batch size must be positive");
        if (hasFill) ValueBudget.Items(size);   // the last batch is padded to the full size
        var result = new List<object?>();
        List<object?>? current = null;
        foreach (var x in PyOps.Iterate(v))
        {
            current ??= [];
            current.Add(x);
            if (current.Count == size)
            {
                result.Add(current);
                current = null;
            }
        }
        if (current is not null)
        {
            while (hasFill && current.Count < size) current.Add(fill);
            result.Add(current);
        }
        return result;
    }

    /// <summary>Jinja's attribute paths for map/selectattr/sort: "a.b" and integer parts, looked up as items first.</summary>
    private static object? GetPath(object? item, object? path)
    {
        if (path is long index) return Interpreter.GetItem(item, index);
        foreach (var part in PyOps.Str(path).Split('.'))
        {
            item = long.TryParse(part, NumberStyles.None, CultureInfo.InvariantCulture, out var i)
                ? Interpreter.GetItem(item, i)
                : Interpreter.GetItem(item, part);
        }
        return item;
    }

    private static List<object?> Map(Interpreter interpreter, object? v, IReadOnlyList<object?> args, IReadOnlyDictionary<string, object?> kwargs)
    {
        var items = PyOps.Iterate(v);
        if (kwargs.TryGetValue("attribute", out var attribute))
        {
            var hasDefault = kwargs.TryGetValue("default", out var fallback);
            return items.Select(x =>
            {
                var value = GetPath(x, attribute);
                return hasDefault && value is Undefined ? fallback : value;
            }).ToList();
        }
        if (args.Count == 0) return items.ToList();
        var filter = PyOps.Str(args[0]);
        var rest = args.Skip(1).ToList();
        return items.Select(x => Apply(interpreter, filter, x, rest, kwargs)).ToList();
    }

    private static List<object?> SelectOrReject(Interpreter interpreter, object? v, IReadOnlyList<object?> args,
        IReadOnlyDictionary<string, object?> kwargs, object? attribute, bool keep)
    {
        var result = new List<object?>();
        foreach (var x in PyOps.Iterate(v))
        {
            interpreter.Step();
            var subject = attribute is null ? x : GetPath(x, attribute);
            var passed = args.Count == 0
                ? PyOps.IsTruthy(subject)
                : Tests.Apply(interpreter, PyOps.Str(args[0]), subject, args.Skip(1).ToList(), kwargs);
            if (passed == keep) result.Add(x);
        }
        return result;
    }

    private static object? SortKey(object? x, bool caseSensitive, object? attribute)
    {
        var key = attribute is null ? x : GetPath(x, attribute);
        return !caseSensitive && key is string s ? s.ToLowerInvariant() : key;
    }

    private static List<object?> Unique(object? v, bool caseSensitive, object? attribute)
    {
        var seen = new List<object?>();
        var result = new List<object?>();
        foreach (var x in PyOps.Iterate(v))
        {
            var key = SortKey(x, caseSensitive, attribute);
            if (seen.Any(k => PyOps.PyEquals(k, key))) continue;
            seen.Add(key);
            result.Add(x);
        }
        return result;
    }

    private static List<object?> Sort(object? v, bool reverse, bool caseSensitive, object? attribute)
    {
        var comparer = Comparer<object?>.Create((p, q) => PyOps.Compare(p, q, "<"));
        // OrderBy is stable, like Python's sorted; reverse=True keeps equal items in their original order too.
        var items = PyOps.Iterate(v);
        return (reverse
            ? items.OrderByDescending(x => SortKey(x, caseSensitive, attribute), comparer)
            : items.OrderBy(x => SortKey(x, caseSensitive, attribute), comparer)).ToList();
    }

    private static List<object?> DictSort(object? v, bool caseSensitive, string by, bool reverse)
    {
        if (v is not PyDict d) throw new TemplateRenderException("dictsort needs a mapping");
        var position = by switch
        {
            "key" => 0,
            "value" => 1,
            _ => throw new TemplateRenderException("You can only sort by either \"key\" or \"value\""),
        };
        var pairs = d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList();
        return Sort(pairs, reverse, caseSensitive, (long)position);
    }
}
