using System.Globalization;
using System.Text;

namespace Celer.ChatTemplates.Runtime;

/// <summary>The Python str, dict and list methods templates call (<c>content.strip()</c>, <c>message.get('x')</c>...).</summary>
internal static class PyMethods
{
    private static readonly HashSet<string> StrMethods =
    [
        "strip", "lstrip", "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "replace", "upper", "lower",
        "title", "capitalize", "swapcase", "find", "rfind", "index", "rindex", "count", "join", "format", "zfill", "center",
        "ljust", "rjust", "partition", "rpartition", "removeprefix", "removesuffix",
        "isdigit", "isalpha", "isalnum", "isspace", "islower", "isupper", "isnumeric", "isdecimal",
    ];

    private static readonly HashSet<string> DictMethods = ["items", "keys", "values", "get", "copy", "clear", "pop", "popitem", "setdefault", "update"];

    private static readonly HashSet<string> ListMethods = ["index", "count", "copy", "append", "clear", "pop", "reverse", "insert", "sort", "extend", "remove"];

    // What jinja2.sandbox.modifies_known_mutable refuses on dicts and lists in the immutable sandbox.
    private static readonly HashSet<string> MutatingDict = ["clear", "pop", "popitem", "setdefault", "update"];
    private static readonly HashSet<string> MutatingList = ["append", "clear", "pop", "reverse", "insert", "sort", "extend", "remove"];

    public static bool HasMethod(object obj, string name) => obj switch
    {
        string => StrMethods.Contains(name),
        PyDict => DictMethods.Contains(name),
        List<object?> => ListMethods.Contains(name),
        PyTuple => name is "index" or "count",
        _ => false,
    };

    public static bool IsMutating(object obj, string name) => obj switch
    {
        PyDict => MutatingDict.Contains(name),
        List<object?> => MutatingList.Contains(name),
        _ => false,
    };

    public static object? Call(object self, string name, IReadOnlyList<object?> args, IReadOnlyDictionary<string, object?> kwargs) => self switch
    {
        string s => CallStr(s, name, new Args(name, args, kwargs)),
        PyDict d => CallDict(d, name, new Args(name, args, kwargs)),
        IReadOnlyList<object?> l => CallList(l, name, new Args(name, args, kwargs)),
        _ => throw new TemplateRenderException($"'{PyOps.TypeName(self)}' object has no attribute '{name}'"),
    };

    private static object? CallDict(PyDict d, string name, Args a) => name switch
    {
        "items" => d.Select(kv => (object?)new PyTuple([kv.Key, kv.Value])).ToList(),
        "keys" => d.Keys.ToList<object?>(),
        "values" => d.Values.ToList(),
        "get" => a.Get(0, "key") is { } key && d.TryGetValue(key, out var v) ? v : a.Get(1, "default"),
        "copy" => Copy(d),
        _ => throw new TemplateRenderException($"'dict' object has no attribute '{name}'"),
    };

    private static PyDict Copy(PyDict d)
    {
        var copy = new PyDict();
        foreach (var (k, v) in d) copy[k] = v;
        return copy;
    }

    private static object? CallList(IReadOnlyList<object?> l, string name, Args a)
    {
        var x = a.Required(0, "value");
        switch (name)
        {
            case "count":
                return (long)l.Count(item => PyOps.PyEquals(item, x));
            case "index":
                for (var i = 0; i < l.Count; i++)
                {
                    if (PyOps.PyEquals(l[i], x)) return (long)i;
                }
                throw new TemplateRenderException($"{PyOps.Repr(x)} is not in list");
            default:
                throw new TemplateRenderException($"'{PyOps.TypeName(l)}' object has no attribute '{name}'");
        }
    }

    private static object? CallStr(string s, string name, Args a)
    {
        switch (name)
        {
            case "strip": return Strip(s, a.Get(0, "chars"), true, true);
            case "lstrip": return Strip(s, a.Get(0, "chars"), true, false);
            case "rstrip": return Strip(s, a.Get(0, "chars"), false, true);
            case "split": return Split(s, a.Get(0, "sep"), a.Int(1, "maxsplit", -1), fromRight: false);
            case "rsplit": return Split(s, a.Get(0, "sep"), a.Int(1, "maxsplit", -1), fromRight: true);
            case "splitlines": return SplitLines(s, PyOps.IsTruthy(a.Get(0, "keepends"))).ToList<object?>();
            case "startswith": return Affix(s, a, (str, p) => str.StartsWith(p, StringComparison.Ordinal));
            case "endswith": return Affix(s, a, (str, p) => str.EndsWith(p, StringComparison.Ordinal));
            case "replace": return Replace(s, a.Str(0, "old"), a.Str(1, "new"), a.Int(2, "count", -1));
            case "upper": return s.ToUpperInvariant();
            case "lower": return s.ToLowerInvariant();
            case "title": return Title(s);
            case "capitalize": return s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();
            case "swapcase": return string.Concat(s.Select(c => char.IsUpper(c) ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c)));
            case "find": return (long)Find(s, a, last: false);
            case "rfind": return (long)Find(s, a, last: true);
            case "index":
            case "rindex":
                var at = Find(s, a, last: name == "rindex");
                return at >= 0 ? (long)at : throw new TemplateRenderException("substring not found");
            case "count": return (long)Count(s, a.Str(0, "sub"));
            case "join": return Join(s, PyOps.Iterate(a.Required(0, "iterable")).Select(x =>
                x as string ?? throw new TemplateRenderException($"sequence item: expected str instance, {PyOps.TypeName(x)} found")).ToList());
            case "format": return Format(s, a);
            case "zfill":
                var width = (int)Math.Min(a.Int(0, "width", 0), int.MaxValue);
                if (s.Length >= width) return s;
                ValueBudget.Chars(width);
                var signed = s.Length > 0 && s[0] is '+' or '-';
                return signed ? s[0] + new string('0', width - s.Length) + s[1..] : new string('0', width - s.Length) + s;
            case "center":
            case "ljust":
            case "rjust":
                return Pad(s, name, (int)Math.Min(a.Int(0, "width", 0), int.MaxValue), a.Get(1, "fillchar") as string ?? " ");
            case "partition":
            case "rpartition":
                var sep = a.Str(0, "sep");
                var idx = name == "partition" ? s.IndexOf(sep, StringComparison.Ordinal) : s.LastIndexOf(sep, StringComparison.Ordinal);
                if (idx < 0) return name == "partition" ? new PyTuple([s, "", ""]) : new PyTuple(["", "", s]);
                return new PyTuple([s[..idx], sep, s[(idx + sep.Length)..]]);
            case "removeprefix": return s.StartsWith(a.Str(0, "prefix"), StringComparison.Ordinal) ? s[a.Str(0, "prefix").Length..] : s;
            case "removesuffix":
                var suffix = a.Str(0, "suffix");
                return suffix.Length > 0 && s.EndsWith(suffix, StringComparison.Ordinal) ? s[..^suffix.Length] : s;
            case "isdigit":
            case "isnumeric":
            case "isdecimal": return s.Length > 0 && s.All(char.IsDigit);
            case "isalpha": return s.Length > 0 && s.All(char.IsLetter);
            case "isalnum": return s.Length > 0 && s.All(char.IsLetterOrDigit);
            case "isspace": return s.Length > 0 && s.All(char.IsWhiteSpace);
            case "islower": return s.Any(char.IsLetter) && !s.Any(char.IsUpper);
            case "isupper": return s.Any(char.IsLetter) && !s.Any(char.IsLower);
            default: throw new TemplateRenderException($"'str' object has no attribute '{name}'");
        }
    }

    public static string Strip(string s, object? chars, bool left, bool right)
    {
        if (chars is not null and not string) throw new TemplateRenderException("strip arg must be None or str");
        var set = chars as string;
        bool Strippable(char c) => set is null ? char.IsWhiteSpace(c) : set.Contains(c);
        int start = 0, end = s.Length;
        if (left) while (start < end && Strippable(s[start])) start++;
        if (right) while (end > start && Strippable(s[end - 1])) end--;
        return s[start..end];
    }

    private static List<object?> Split(string s, object? sep, long maxSplit, bool fromRight)
    {
        var parts = new List<string>();
        if (sep is null)
        {
            // Whitespace split: runs of whitespace separate, and leading/trailing whitespace gives no empty parts.
            var words = new List<(int Start, int End)>();
            for (var i = 0; i < s.Length;)
            {
                while (i < s.Length && char.IsWhiteSpace(s[i])) i++;
                if (i >= s.Length) break;
                var st = i;
                while (i < s.Length && !char.IsWhiteSpace(s[i])) i++;
                words.Add((st, i));
            }
            if (maxSplit < 0 || words.Count <= maxSplit + 1) return words.Select(w => (object?)s[w.Start..w.End]).ToList();
            var keep = (int)maxSplit;
            if (!fromRight)
            {
                var head = words.Take(keep).Select(w => s[w.Start..w.End]).ToList();
                head.Add(s[words[keep].Start..].TrimEnd());
                return head.ToList<object?>();
            }
            var tail = words.Skip(words.Count - keep).Select(w => s[w.Start..w.End]).ToList();
            tail.Insert(0, s[..words[words.Count - keep - 1].End].TrimStart());
            return tail.ToList<object?>();
        }
        if (sep is not string separator) throw new TemplateRenderException($"must be str or None, not {PyOps.TypeName(sep)}");
        if (separator.Length == 0) throw new TemplateRenderException("empty separator");
        if (!fromRight)
        {
            var start = 0;
            while (maxSplit < 0 || parts.Count < maxSplit)
            {
                var at = s.IndexOf(separator, start, StringComparison.Ordinal);
                if (at < 0) break;
                parts.Add(s[start..at]);
                start = at + separator.Length;
            }
            parts.Add(s[start..]);
            return parts.ToList<object?>();
        }
        var end = s.Length;
        while (maxSplit < 0 || parts.Count < maxSplit)
        {
            var at = end - separator.Length < 0 ? -1 : s.LastIndexOf(separator, end - 1, end, StringComparison.Ordinal);
            if (at < 0 || at + separator.Length > end) break;
            parts.Add(s[(at + separator.Length)..end]);
            end = at;
        }
        parts.Add(s[..end]);
        parts.Reverse();
        return parts.ToList<object?>();
    }

    /// <summary>Python's str.splitlines: \n, \r\n, \r and the other Unicode line boundaries.</summary>
    public static List<string> SplitLines(string s, bool keepEnds)
    {
        var lines = new List<string>();
        var start = 0;
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (c is not ('\n' or '\r' or '\v' or '\f' or '\x1c' or '\x1d' or '\x1e' or '\x85' or '\u2028' or '\u2029')) continue;
            var breakEnd = c == '\r' && i + 1 < s.Length && s[i + 1] == '\n' ? i + 2 : i + 1;
            lines.Add(keepEnds ? s[start..breakEnd] : s[start..i]);
            start = breakEnd;
            i = breakEnd - 1;
        }
        if (start < s.Length) lines.Add(s[start..]);
        return lines;
    }

    private static bool Affix(string s, Args a, Func<string, string, bool> test)
    {
        var affix = a.Required(0, "prefix");
        var start = (int)Math.Clamp(a.Int(1, "start", 0), 0, s.Length);
        var end = (int)Math.Clamp(a.Int(2, "end", s.Length), start, s.Length);
        var window = s[start..end];
        return affix switch
        {
            string p => test(window, p),
            PyTuple t => t.Any(p => p is string ps ? test(window, ps)
                : throw new TemplateRenderException("tuple for startswith/endswith must only contain str")),
            _ => throw new TemplateRenderException($"startswith/endswith first arg must be str or a tuple of str, not {PyOps.TypeName(affix)}"),
        };
    }

    public static string Replace(string s, string old, string replacement, long count)
    {
        // The result's length, before building it: each replaced occurrence changes it by new - old.
        long occurrences = Math.Min(Count(s, old), count < 0 ? long.MaxValue : count);
        ValueBudget.Chars(s.Length + occurrences * (replacement.Length - old.Length));
        if (count < 0) return old.Length == 0 ? InsertEverywhere(s, replacement, int.MaxValue) : s.Replace(old, replacement, StringComparison.Ordinal);
        if (old.Length == 0) return InsertEverywhere(s, replacement, (int)count);
        var sb = new StringBuilder();
        var start = 0;
        for (var n = 0; n < count; n++)
        {
            var at = s.IndexOf(old, start, StringComparison.Ordinal);
            if (at < 0) break;
            sb.Append(s, start, at - start).Append(replacement);
            start = at + old.Length;
        }
        return sb.Append(s, start, s.Length - start).ToString();
    }

    // Python: "ab".replace("", "-") == "-a-b-"
    private static string InsertEverywhere(string s, string insert, int count)
    {
        var sb = new StringBuilder();
        var n = 0;
        for (var i = 0; i <= s.Length; i++)
        {
            if (n++ < count) sb.Append(insert);
            if (i < s.Length) sb.Append(s[i]);
        }
        return sb.ToString();
    }

    /// <summary>Python's str.title: a cased letter after an uncased character starts a word.</summary>
    private static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        var previousCased = false;
        foreach (var c in s)
        {
            sb.Append(previousCased ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousCased = char.IsLetter(c);
        }
        return sb.ToString();
    }

    private static int Find(string s, Args a, bool last)
    {
        var sub = a.Str(0, "sub");
        var start = (int)Math.Clamp(a.Int(1, "start", 0) is var st && st < 0 ? st + s.Length : st, 0, s.Length);
        var end = (int)Math.Clamp(a.Int(2, "end", s.Length) is var en && en < 0 ? en + s.Length : en, 0, s.Length);
        if (end < start) return -1;
        var window = s[start..end];
        var at = last ? window.LastIndexOf(sub, StringComparison.Ordinal) : window.IndexOf(sub, StringComparison.Ordinal);
        return at < 0 ? -1 : at + start;
    }

    /// <summary>str.join within the value budget.</summary>
    public static string Join(string separator, IReadOnlyList<string> parts)
    {
        ValueBudget.Chars(parts.Sum(p => (long)p.Length) + (long)separator.Length * Math.Max(0, parts.Count - 1));
        return string.Join(separator, parts);
    }

    private static int Count(string s, string sub)
    {
        if (sub.Length == 0) return s.Length + 1;
        var n = 0;
        for (var at = s.IndexOf(sub, StringComparison.Ordinal); at >= 0; at = s.IndexOf(sub, at + sub.Length, StringComparison.Ordinal)) n++;
        return n;
    }

    private static string Pad(string s, string how, int width, string fill)
    {
        if (fill.Length != 1) throw new TemplateRenderException("The fill character must be exactly one character long");
        var total = width - s.Length;
        if (total <= 0) return s;
        ValueBudget.Chars(width);
        var f = fill[0];
        return how switch
        {
            "ljust" => s + new string(f, total),
            "rjust" => new string(f, total) + s,
            // CPython's split of an odd margin: left = margin / 2 + (margin & width & 1).
            _ => new string(f, total / 2 + (total & width & 1)) + s + new string(f, total - (total / 2 + (total & width & 1))),
        };
    }

    /// <summary>str.format with <c>{}</c>, <c>{0}</c> and <c>{name}</c> fields (no format specs).</summary>
    private static string Format(string s, Args a)
    {
        var sb = new StringBuilder();
        var auto = 0;
        for (var i = 0; i < s.Length; i++)
        {
            var c = s[i];
            if (c == '{' && i + 1 < s.Length && s[i + 1] == '{') { sb.Append('{'); i++; continue; }
            if (c == '}' && i + 1 < s.Length && s[i + 1] == '}') { sb.Append('}'); i++; continue; }
            if (c != '{')
            {
                sb.Append(c);
                continue;
            }
            var close = s.IndexOf('}', i);
            if (close < 0) throw new TemplateRenderException("Single '{' encountered in format string");
            var field = s[(i + 1)..close];
            if (field.Contains(':') || field.Contains('!')) throw new TemplateRenderException("format specs are not supported in str.format");
            object? value;
            if (field.Length == 0) value = a.Positional(auto++);
            else if (int.TryParse(field, NumberStyles.None, CultureInfo.InvariantCulture, out var n)) value = a.Positional(n);
            else value = a.Kwargs.TryGetValue(field, out var kv) ? kv : throw new TemplateRenderException($"KeyError: '{field}'");
            sb.Append(PyOps.Str(value));
            i = close;
        }
        return sb.ToString();
    }

    /// <summary>Positional-or-keyword argument access with Python's error for a missing one.</summary>
    internal readonly struct Args(string method, IReadOnlyList<object?> positional, IReadOnlyDictionary<string, object?> kwargs)
    {
        public IReadOnlyDictionary<string, object?> Kwargs => kwargs;

        public object? Get(int index, string name) =>
            index < positional.Count ? positional[index] : kwargs.TryGetValue(name, out var v) ? v : null;

        public object? Positional(int index) =>
            index < positional.Count ? positional[index] : throw new TemplateRenderException($"Replacement index {index} out of range for positional args tuple");

        public object? Required(int index, string name) =>
            index < positional.Count || kwargs.ContainsKey(name) ? Get(index, name)
                : throw new TemplateRenderException($"{method}() missing required argument '{name}'");

        public string Str(int index, string name) => Required(index, name) as string
            ?? throw new TemplateRenderException($"{method}() argument '{name}' must be str");

        public long Int(int index, string name, long fallback) => Get(index, name) switch
        {
            null => fallback,
            long l => l,
            bool b => b ? 1 : 0,
            var other => throw new TemplateRenderException($"{method}() argument '{name}' must be int, not {PyOps.TypeName(other)}"),
        };
    }
}
