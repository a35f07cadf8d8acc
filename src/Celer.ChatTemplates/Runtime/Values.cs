using System.Collections;

namespace Celer.ChatTemplates.Runtime;

// Template values are plain CLR objects standing in for Python's: null is None, bool, long (int), double (float),
// string, List<object?> (list), PyTuple, PyDict (insertion-ordered dict), plus the runtime types below.

/// <summary>Jinja's default <c>Undefined</c>: prints as "", is falsy, iterates as empty, and fails on any other use with its hint.</summary>
internal sealed class Undefined
{
    public Undefined(string hint) => Hint = hint;

    /// <summary>The message Jinja's UndefinedError would carry, e.g. <c>'foo' is undefined</c>.</summary>
    public string Hint { get; }

    public static Undefined ForName(string name) => new($"'{name}' is undefined");

    public static Undefined ForAttribute(object? owner, object? name) =>
        new($"'{PyOps.ObjectTypeRepr(owner)}' has no attribute {PyOps.Repr(name)}");

    public static Undefined ForElement(object? owner, object? index) =>
        new($"{PyOps.ObjectTypeRepr(owner)} has no element {PyOps.Repr(index)}");

    public TemplateRenderException Fail() => new(Hint);
}

/// <summary>An immutable Python tuple.</summary>
internal sealed class PyTuple(object?[] items) : IReadOnlyList<object?>
{
    public object?[] Items { get; } = items;
    public int Count => Items.Length;
    public object? this[int index] => Items[index];
    public IEnumerator<object?> GetEnumerator() => ((IEnumerable<object?>)Items).GetEnumerator();
    IEnumerator IEnumerable.GetEnumerator() => Items.GetEnumerator();
}

/// <summary>A Python dict: insertion-ordered, keys compared with Python equality (1 == 1.0 == True).</summary>
internal sealed class PyDict : OrderedDictionary<object, object?>
{
    public PyDict() : base(PyKeyComparer.Instance) { }
}

internal sealed class PyKeyComparer : IEqualityComparer<object>
{
    public static readonly PyKeyComparer Instance = new();
    public new bool Equals(object? x, object? y) => PyOps.PyEquals(x, y);
    public int GetHashCode(object obj) => obj switch
    {
        bool b => b ? 1 : 0,
        long l => l.GetHashCode(),
        double d when d == Math.Floor(d) && Math.Abs(d) < 9e18 => ((long)d).GetHashCode(),
        PyTuple t => t.Items.Aggregate(17, (h, v) => h * 31 + (v is null ? 0 : GetHashCode(v))),
        _ => obj.GetHashCode(),
    };
}

/// <summary>The object <c>namespace(...)</c> returns: the one thing a template may assign attributes on.</summary>
internal sealed class Namespace : Dictionary<string, object?>
{
}

/// <summary>Anything a template can call: macros, globals such as <c>raise_exception</c>, and bound string/dict methods.</summary>
internal abstract class PyCallable
{
    public abstract object? Invoke(Interpreter interpreter, IReadOnlyList<object?> args, IReadOnlyDictionary<string, object?> kwargs);
}

internal sealed class BuiltinFunction(string name, Func<Interpreter, IReadOnlyList<object?>, IReadOnlyDictionary<string, object?>, object?> body) : PyCallable
{
    public string Name { get; } = name;
    public override object? Invoke(Interpreter interpreter, IReadOnlyList<object?> args, IReadOnlyDictionary<string, object?> kwargs) =>
        body(interpreter, args, kwargs);
}

/// <summary><c>obj.method</c> looked up on a str, dict or list; called through <see cref="PyMethods"/>.</summary>
internal sealed class BoundMethod(object self, string name) : PyCallable
{
    public object Self { get; } = self;
    public string Name { get; } = name;
    public override object? Invoke(Interpreter interpreter, IReadOnlyList<object?> args, IReadOnlyDictionary<string, object?> kwargs) =>
        PyMethods.Call(Self, Name, args, kwargs);
}

/// <summary>The <c>loop</c> variable inside a for block.</summary>
internal sealed class LoopContext(IReadOnlyList<object?> items, int depth0)
{
    public int Index0 { get; set; }
    public IReadOnlyList<object?> Items { get; } = items;
    public int Depth0 { get; } = depth0;

    public object? GetAttribute(string name) => name switch
    {
        "index0" => (long)Index0,
        "index" => (long)Index0 + 1,
        "revindex" => (long)(Items.Count - Index0),
        "revindex0" => (long)(Items.Count - Index0 - 1),
        "first" => Index0 == 0,
        "last" => Index0 == Items.Count - 1,
        "length" => (long)Items.Count,
        "depth" => (long)Depth0 + 1,
        "depth0" => (long)Depth0,
        "previtem" => Index0 > 0 ? Items[Index0 - 1] : new Undefined("there is no previous item"),
        "nextitem" => Index0 + 1 < Items.Count ? Items[Index0 + 1] : new Undefined("there is no next item"),
        "cycle" => new BuiltinFunction("cycle", (_, args, _) =>
            args.Count == 0 ? throw new TemplateRenderException("no items for cycling given") : args[Index0 % args.Count]),
        _ => Undefined.ForAttribute(this, name),
    };
}
