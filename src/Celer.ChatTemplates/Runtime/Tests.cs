namespace Celer.ChatTemplates.Runtime;

/// <summary>Jinja's built-in tests (<c>x is defined</c>, <c>x is string</c>...), with Python's type rules.</summary>
internal static class Tests
{
    public static bool Apply(Interpreter interpreter, string name, object? v, IReadOnlyList<object?> args, IReadOnlyDictionary<string, object?> kwargs)
    {
        object? Arg() => args.Count > 0 ? args[0] : kwargs.Values.FirstOrDefault()
            ?? throw new TemplateRenderException($"test '{name}' needs an argument");
        return name switch
        {
            "defined" => v is not Undefined,
            "undefined" => v is Undefined,
            "none" => v is null,
            "string" => v is string,
            // Python's bool is an int, so True is a number but Jinja excludes it from "integer".
            "number" => v is long or double or bool,
            "integer" => v is long,
            "float" => v is double,
            "boolean" => v is bool,
            "true" => v is true,
            "false" => v is false,
            "mapping" => v is PyDict,
            "iterable" => PyOps.IsIterable(v),
            "sequence" => v is string or IReadOnlyList<object?> or PyDict,
            "callable" => v is PyCallable,
            "odd" => PyOps.ToLong(RequireInt(v, name)) % 2 != 0,
            "even" => PyOps.ToLong(RequireInt(v, name)) % 2 == 0,
            "divisibleby" => PyOps.PyEquals(PyOps.Arith(v, Arg(), "%"), 0L),
            "eq" or "equalto" or "==" => PyOps.PyEquals(v, Arg()),
            "ne" or "!=" => !PyOps.PyEquals(v, Arg()),
            "lt" or "lessthan" or "<" => PyOps.Compare(v, Arg(), "<") < 0,
            "le" or "<=" => PyOps.Compare(v, Arg(), "<=") <= 0,
            "gt" or "greaterthan" or ">" => PyOps.Compare(v, Arg(), ">") > 0,
            "ge" or ">=" => PyOps.Compare(v, Arg(), ">=") >= 0,
            "in" => PyOps.Contains(Arg(), v),
            "sameas" => ReferenceEquals(v, Arg()) || v is null && Arg() is null || v is bool b && Arg() is bool c && b == c,
            "lower" => v is string ls && string.Equals(ls, ls.ToLowerInvariant(), StringComparison.Ordinal),
            "upper" => v is string us && string.Equals(us, us.ToUpperInvariant(), StringComparison.Ordinal),
            "escaped" => false,
            "filter" => v is string fs && Filters.Exists(fs),
            "test" => v is string ts && Exists(ts),
            _ => throw new TemplateRenderException($"No test named '{name}'."),
        };
    }

    private static readonly HashSet<string> Names =
    [
        "defined", "undefined", "none", "string", "number", "integer", "float", "boolean", "true", "false", "mapping",
        "iterable", "sequence", "callable", "odd", "even", "divisibleby", "eq", "equalto", "==", "ne", "!=", "lt",
        "lessthan", "<", "le", "<=", "gt", "greaterthan", ">", "ge", ">=", "in", "sameas", "lower", "upper", "escaped",
        "filter", "test",
    ];

    public static bool Exists(string name) => Names.Contains(name);

    private static object? RequireInt(object? v, string test) => v is long or bool ? v
        : v is Undefined u ? throw u.Fail()
        : throw new TemplateRenderException($"test '{test}' needs an integer, got {PyOps.TypeName(v)}");
}
