using System.Globalization;
using System.Numerics;
using System.Text;

namespace Celer.ChatTemplates.Runtime;

/// <summary>Python semantics of the operations templates perform on values: truth, equality, ordering, arithmetic, str() and repr().</summary>
internal static class PyOps
{
    public static bool IsTruthy(object? v) => v switch
    {
        null => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length != 0,
        Undefined => false,
        List<object?> l => l.Count != 0,
        PyTuple t => t.Count != 0,
        PyDict d => d.Count != 0,
        Namespace => true,
        _ => true,
    };

    public static string TypeName(object? v) => v switch
    {
        null => "NoneType",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        PyTuple => "tuple",
        PyDict => "dict",
        Undefined => "Undefined",
        Namespace => "Namespace",
        LoopContext => "LoopContext",
        PyCallable => "function",
        _ => v.GetType().Name,
    };

    /// <summary>Jinja's object_type_repr: "None" for None, "dict object" for a dict, and so on.</summary>
    public static string ObjectTypeRepr(object? v) => v is null ? "None" : TypeName(v) + " object";

    public static bool IsNumber(object? v) => v is long or double or bool;

    public static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new InvalidCastException(),
    };

    public static bool PyEquals(object? a, object? b)
    {
        if (a is null || b is null) return a is null && b is null;
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a) == ToDouble(b);
            return ToLong(a) == ToLong(b);
        }
        switch (a)
        {
            case string sa: return b is string sb && sa == sb;
            case Undefined: return b is Undefined;
            case List<object?> la: return b is List<object?> lb && SequenceEquals(la, lb);
            case PyTuple ta: return b is PyTuple tb && SequenceEquals(ta, tb);
            case PyDict da:
                if (b is not PyDict db || da.Count != db.Count) return false;
                foreach (var (k, v) in da)
                {
                    if (!db.TryGetValue(k, out var ov) || !PyEquals(v, ov)) return false;
                }
                return true;
            default: return ReferenceEquals(a, b);
        }
    }

    private static bool SequenceEquals(IReadOnlyList<object?> a, IReadOnlyList<object?> b)
    {
        if (a.Count != b.Count) return false;
        for (var i = 0; i < a.Count; i++)
        {
            if (!PyEquals(a[i], b[i])) return false;
        }
        return true;
    }

    public static long ToLong(object? v) => v switch
    {
        long l => l,
        bool b => b ? 1 : 0,
        _ => throw new InvalidCastException(),
    };

    /// <summary>Python's rich comparison for &lt; &lt;= &gt; &gt;=: numbers, strings (by code point) and sequences only.</summary>
    public static int Compare(object? a, object? b, string op)
    {
        if (a is Undefined ua) throw ua.Fail();
        if (b is Undefined ub) throw ub.Fail();
        if (IsNumber(a) && IsNumber(b))
        {
            if (a is double || b is double) return ToDouble(a).CompareTo(ToDouble(b));
            return ToLong(a).CompareTo(ToLong(b));
        }
        if (a is string sa && b is string sb) return string.CompareOrdinal(sa, sb);
        if (a is IReadOnlyList<object?> la && b is IReadOnlyList<object?> lb && a.GetType() == b.GetType())
        {
            for (var i = 0; i < Math.Min(la.Count, lb.Count); i++)
            {
                if (!PyEquals(la[i], lb[i])) return Compare(la[i], lb[i], op);
            }
            return la.Count.CompareTo(lb.Count);
        }
        throw new TemplateRenderException(
            $"'{op}' not supported between instances of '{TypeName(a)}' and '{TypeName(b)}'");
    }

    public static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal)
            : throw new TemplateRenderException($"'in <string>' requires string as left operand, not {TypeName(item)}"),
        PyDict d => item is not null && d.ContainsKey(item),
        Namespace n => item is string key && n.ContainsKey(key),
        IReadOnlyList<object?> l => l.Any(x => PyEquals(x, item)),
        Undefined => false,
        _ => throw new TemplateRenderException($"argument of type '{TypeName(container)}' is not iterable"),
    };

    public static long Length(object? v) => v switch
    {
        string s => s.Length,
        IReadOnlyList<object?> l => l.Count,
        PyDict d => d.Count,
        Namespace n => n.Count,
        Undefined => 0,
        _ => throw new TemplateRenderException($"object of type '{TypeName(v)}' has no len()"),
    };

    /// <summary>Python iteration: a string yields its chars, a dict its keys, Undefined nothing.</summary>
    public static IReadOnlyList<object?> Iterate(object? v) => v switch
    {
        List<object?> l => l,
        PyTuple t => t,
        string s => s.Select(c => (object?)c.ToString()).ToList(),
        PyDict d => d.Keys.ToList<object?>(),
        Undefined => [],
        _ => throw new TemplateRenderException($"'{TypeName(v)}' object is not iterable"),
    };

    public static bool IsIterable(object? v) => v is string or IReadOnlyList<object?> or PyDict or Undefined;

    // ---------------------------------------------------------------- arithmetic

    public static object? Add(object? a, object? b)
    {
        FailIfUndefined(a, b);
        if (IsNumber(a) && IsNumber(b)) return Arith(a, b, "+");
        return (a, b) switch
        {
            (string x, string y) => Concat(x, y),
            (List<object?> x, List<object?> y) => (object)ConcatLists(x, y),
            (PyTuple x, PyTuple y) => new PyTuple([.. ConcatLists(x.Items, y.Items)]),
            (string, _) => throw new TemplateRenderException($"can only concatenate str (not \"{TypeName(b)}\") to str"),
            (List<object?>, _) => throw new TemplateRenderException($"can only concatenate list (not \"{TypeName(b)}\") to list"),
            _ => throw Unsupported("+", a, b),
        };
    }

    public static object? Multiply(object? a, object? b)
    {
        FailIfUndefined(a, b);
        if (IsNumber(a) && IsNumber(b)) return Arith(a, b, "*");
        return (a, b) switch
        {
            (string s, long or bool) => Repeat(s, ToLong(b)),
            (long or bool, string s) => Repeat(s, ToLong(a)),
            (List<object?> l, long or bool) => RepeatList(l, ToLong(b)),
            _ => throw Unsupported("*", a, b),
        };
    }

    /// <summary>a + b for strings, within the value budget.</summary>
    public static string Concat(string a, string b)
    {
        ValueBudget.Chars((long)a.Length + b.Length);
        return a + b;
    }

    private static List<object?> ConcatLists(IReadOnlyList<object?> a, IReadOnlyList<object?> b)
    {
        ValueBudget.Items((long)a.Count + b.Count);
        return [.. a, .. b];
    }

    private static string Repeat(string s, long n)
    {
        if (n <= 0 || s.Length == 0) return "";
        ValueBudget.Chars(s.Length * n);   // both at most 2^31: no overflow
        return new StringBuilder(s.Length * (int)n).Insert(0, s, (int)n).ToString();
    }

    private static List<object?> RepeatList(List<object?> l, long n)
    {
        if (n <= 0 || l.Count == 0) return [];
        ValueBudget.Items(l.Count * n);
        var result = new List<object?>(l.Count * (int)n);
        for (var i = 0; i < n; i++) result.AddRange(l);
        return result;
    }

    public static object? Arith(object? a, object? b, string op)
    {
        FailIfUndefined(a, b);
        if (!IsNumber(a) || !IsNumber(b))
        {
            if (op == "%" && a is string) throw new TemplateRenderException("printf-style '%' formatting is not supported");
            throw Unsupported(op, a, b);
        }
        if (op == "/")
        {
            var divisor = ToDouble(b);
            if (divisor == 0) throw new TemplateRenderException("division by zero");
            return ToDouble(a) / divisor;
        }
        if (a is double || b is double)
        {
            double x = ToDouble(a), y = ToDouble(b);
            if (y == 0 && op is "//" or "%") throw new TemplateRenderException("float division by zero");
            return op switch
            {
                "+" => x + y,
                "-" => x - y,
                "*" => x * y,
                "//" => Math.Floor(x / y),
                "%" => x - Math.Floor(x / y) * y,
                "**" => Math.Pow(x, y),
                _ => throw Unsupported(op, a, b),
            };
        }
        long p = ToLong(a), q = ToLong(b);
        if (q == 0 && op is "//" or "%") throw new TemplateRenderException("integer division or modulo by zero");
        return op switch
        {
            "+" => checked(p + q),
            "-" => checked(p - q),
            "*" => checked(p * q),
            "//" => FloorDiv(p, q),
            "%" => p - FloorDiv(p, q) * q,
            "**" => q < 0 ? Math.Pow(p, q) : (object)(long)BigInteger.Pow(p, (int)Math.Min(q, 4096)),
            _ => throw Unsupported(op, a, b),
        };
    }

    private static long FloorDiv(long p, long q)
    {
        var d = p / q;
        return (p % q != 0 && (p < 0) != (q < 0)) ? d - 1 : d;
    }

    public static object? Negate(object? v) => v switch
    {
        // Boxed explicitly: a switch mixing long and double arms would otherwise widen every arm to double.
        long l => (object)(-l),
        double d => -d,
        bool b => b ? -1L : 0L,
        Undefined u => throw u.Fail(),
        _ => throw new TemplateRenderException($"bad operand type for unary -: '{TypeName(v)}'"),
    };

    private static void FailIfUndefined(object? a, object? b)
    {
        if (a is Undefined ua) throw ua.Fail();
        if (b is Undefined ub) throw ub.Fail();
    }

    private static TemplateRenderException Unsupported(string op, object? a, object? b) =>
        new($"unsupported operand type(s) for {op}: '{TypeName(a)}' and '{TypeName(b)}'");

    // ---------------------------------------------------------------- str() and repr()

    /// <summary>Python's str(): what <c>{{ value }}</c> prints.</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        Undefined => "",
        _ => Repr(v),
    };

    public static string Repr(object? v)
    {
        var sb = new StringBuilder();
        AppendRepr(sb, v);
        return sb.ToString();
    }

    private static void AppendRepr(StringBuilder sb, object? v)
    {
        switch (v)
        {
            case null: sb.Append("None"); break;
            case bool b: sb.Append(b ? "True" : "False"); break;
            case long l: sb.Append(l.ToString(CultureInfo.InvariantCulture)); break;
            case double d: sb.Append(FloatRepr(d)); break;
            case string s: AppendStringRepr(sb, s); break;
            case Undefined: sb.Append("Undefined"); break;
            case List<object?> l: AppendItems(sb, "[", l, "]"); break;
            case PyTuple t: AppendItems(sb, "(", t, t.Count == 1 ? ",)" : ")"); break;
            case PyDict d:
                sb.Append('{');
                var first = true;
                foreach (var (k, val) in d)
                {
                    if (!first) sb.Append(", ");
                    first = false;
                    AppendRepr(sb, k);
                    sb.Append(": ");
                    AppendRepr(sb, val);
                }
                sb.Append('}');
                break;
            case Namespace n:
                sb.Append("<Namespace {");
                sb.AppendJoin(", ", n.Select(kv => Repr(kv.Key) + ": " + Repr(kv.Value)));
                sb.Append("}>");
                break;
            case BoundMethod m: sb.Append($"<built-in method {m.Name} of {TypeName(m.Self)} object>"); break;
            default: sb.Append($"<{TypeName(v)} object>"); break;
        }
    }

    private static void AppendItems(StringBuilder sb, string open, IReadOnlyList<object?> items, string close)
    {
        sb.Append(open);
        for (var i = 0; i < items.Count; i++)
        {
            if (i > 0) sb.Append(", ");
            AppendRepr(sb, items[i]);
        }
        sb.Append(close);
    }

    /// <summary>Python's str.__repr__: single quotes unless the text has a ' and no ".</summary>
    private static void AppendStringRepr(StringBuilder sb, string s)
    {
        var quote = s.Contains('\'') && !s.Contains('"') ? '"' : '\'';
        sb.Append(quote);
        foreach (var c in s)
        {
            if (c == quote || c == '\\') sb.Append('\\').Append(c);
            else if (c == '\n') sb.Append("\\n");
            else if (c == '\r') sb.Append("\\r");
            else if (c == '\t') sb.Append("\\t");
            else if (c < 0x20 || c == 0x7f) sb.Append("\\x").Append(((int)c).ToString("x2", CultureInfo.InvariantCulture));
            else sb.Append(c);
        }
        sb.Append(quote);
    }

    /// <summary>Python's float.__repr__: shortest round-trip digits, scientific below 1e-4 and from 1e16.</summary>
    public static string FloatRepr(double d)
    {
        if (double.IsNaN(d)) return "nan";
        if (double.IsInfinity(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return double.IsNegative(d) ? "-0.0" : "0.0";
        // "E16" is not shortest; "R" is, so take its digits and exponent and lay them out the way Python does.
        var r = d.ToString("R", CultureInfo.InvariantCulture);
        var negative = r[0] == '-';
        if (negative) r = r[1..];
        var exponent = 0;
        var e = r.IndexOf('E');
        if (e >= 0)
        {
            exponent = int.Parse(r[(e + 1)..], CultureInfo.InvariantCulture);
            r = r[..e];
        }
        var dot = r.IndexOf('.');
        var intPart = dot >= 0 ? r[..dot] : r;
        var fracPart = dot >= 0 ? r[(dot + 1)..] : "";
        var digits = (intPart + fracPart).TrimStart('0');
        var leadingZeros = (intPart + fracPart).Length - digits.Length;
        digits = digits.TrimEnd('0');
        if (digits.Length == 0) digits = "0";
        // decimal exponent of the first significant digit
        var exp10 = intPart.Length - 1 - leadingZeros + exponent;
        string body;
        if (exp10 < -4 || exp10 >= 16)
        {
            var mantissa = digits.Length > 1 ? digits[0] + "." + digits[1..] : digits;
            body = mantissa + "e" + (exp10 < 0 ? "-" : "+") + Math.Abs(exp10).ToString("00", CultureInfo.InvariantCulture);
        }
        else if (exp10 < 0)
        {
            body = "0." + new string('0', -exp10 - 1) + digits;
        }
        else if (digits.Length <= exp10 + 1)
        {
            body = digits + new string('0', exp10 + 1 - digits.Length) + ".0";
        }
        else
        {
            body = digits[..(exp10 + 1)] + "." + digits[(exp10 + 1)..];
        }
        return negative ? "-" + body : body;
    }
}
