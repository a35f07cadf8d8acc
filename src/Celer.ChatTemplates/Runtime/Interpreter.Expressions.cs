using Celer.ChatTemplates.Syntax;

namespace Celer.ChatTemplates.Runtime;

internal sealed partial class Interpreter
{
    private static readonly IReadOnlyDictionary<string, object?> NoKwargs = new Dictionary<string, object?>();

    public object? Eval(Expr expr, Scope scope)
    {
        Step();
        EnterDepth(expr.Line);
        try
        {
            return EvalCore(expr, scope);
        }
        finally
        {
            _depth--;
        }
    }

    private object? EvalCore(Expr expr, Scope scope)
    {
        switch (expr)
        {
            case ConstExpr c:
                return c.Value;
            case NameExpr n:
                return scope.TryGet(n.Name, out var v) ? v : Undefined.ForName(n.Name);
            case ListExpr l:
                return l.Items.Select(i => Eval(i, scope)).ToList();
            case TupleExpr t:
                return new PyTuple(t.Items.Select(i => Eval(i, scope)).ToArray());
            case DictExpr d:
                var dict = new PyDict();
                foreach (var (k, val) in d.Pairs)
                {
                    dict[Eval(k, scope) ?? throw new TemplateRenderException("None as a dict key is not supported")] = Eval(val, scope);
                }
                return dict;
            case GetAttrExpr a:
                return GetAttr(Eval(a.Target, scope), a.Name);
            case GetItemExpr g:
                var target = Eval(g.Target, scope);
                return g.Key is SliceExpr s ? Slice(target, s, scope) : GetItem(target, Eval(g.Key, scope));
            case CallExpr call:
                return EvalCall(call, scope);
            case FilterExpr f:
                var input = Eval(f.Target!, scope);
                var (fargs, fkwargs) = EvalArgs(f.Args, scope);
                return Filters.Apply(this, f.Name, input, fargs, fkwargs);
            case TestExpr t:
                var subject = Eval(t.Target, scope);
                var (targs, tkwargs) = EvalArgs(t.Args, scope);
                return Tests.Apply(this, t.Name, subject, targs, tkwargs) != t.Negated;
            case UnaryExpr u:
                var operand = Eval(u.Operand, scope);
                return u.Op switch
                {
                    "not" => !PyOps.IsTruthy(operand),
                    "-" => PyOps.Negate(operand),
                    _ => PyOps.IsNumber(operand) ? operand is bool b ? (b ? 1L : 0L) : operand
                        : throw new TemplateRenderException($"bad operand type for unary +: '{PyOps.TypeName(operand)}'"),
                };
            case BinaryExpr b:
                return EvalBinary(b, scope);
            case CompareExpr c:
                return EvalCompare(c, scope);
            case CondExpr c:
                if (PyOps.IsTruthy(Eval(c.Test, scope))) return Eval(c.Then, scope);
                return c.Else is null ? new Undefined("the inline if-expression evaluated to false and no else section was defined.") : Eval(c.Else, scope);
            default:
                throw new TemplateRenderException($"unsupported expression {expr.GetType().Name} (line {expr.Line})");
        }
    }

    private object? EvalBinary(BinaryExpr b, Scope scope)
    {
        var left = Eval(b.Left, scope);
        switch (b.Op)
        {
            // Python's and/or return an operand, not a bool.
            case "and": return PyOps.IsTruthy(left) ? Eval(b.Right, scope) : left;
            case "or": return PyOps.IsTruthy(left) ? left : Eval(b.Right, scope);
        }
        var right = Eval(b.Right, scope);
        return b.Op switch
        {
            "~" => PyOps.Concat(PyOps.Str(left), PyOps.Str(right)),
            "+" => PyOps.Add(left, right),
            "*" => PyOps.Multiply(left, right),
            _ => PyOps.Arith(left, right, b.Op),
        };
    }

    private bool EvalCompare(CompareExpr c, Scope scope)
    {
        var left = Eval(c.First, scope);
        foreach (var (op, operandExpr) in c.Rest)
        {
            var right = Eval(operandExpr, scope);
            var ok = op switch
            {
                "==" => PyOps.PyEquals(left, right),
                "!=" => !PyOps.PyEquals(left, right),
                "in" => PyOps.Contains(right, left),
                "notin" => !PyOps.Contains(right, left),
                "<" => PyOps.Compare(left, right, op) < 0,
                "<=" => PyOps.Compare(left, right, op) <= 0,
                ">" => PyOps.Compare(left, right, op) > 0,
                _ => PyOps.Compare(left, right, op) >= 0,
            };
            if (!ok) return false;
            left = right;
        }
        return true;
    }

    private object? EvalCall(CallExpr call, Scope scope)
    {
        var callee = Eval(call.Callee, scope);
        var (args, kwargs) = EvalArgs(call.Args, scope);
        return callee switch
        {
            PyCallable f => f.Invoke(this, args, kwargs),
            Undefined u => throw u.Fail(),
            _ => throw new TemplateRenderException($"'{PyOps.TypeName(callee)}' object is not callable (line {call.Line})"),
        };
    }

    public (List<object?> Args, IReadOnlyDictionary<string, object?> Kwargs) EvalArgs(CallArgs args, Scope scope)
    {
        var positional = args.Positional.Select(a => Eval(a, scope)).ToList();
        if (args.Keyword.Count == 0) return (positional, NoKwargs);
        var kwargs = new Dictionary<string, object?>();
        foreach (var (name, value) in args.Keyword) kwargs[name] = Eval(value, scope);
        return (positional, kwargs);
    }

    // ------------------------------------------------------------------ attribute and item access

    /// <summary><c>obj.name</c>: a Python attribute (str/dict/list methods) first, then the item (Jinja's getattr).</summary>
    public static object? GetAttr(object? obj, string name)
    {
        switch (obj)
        {
            case Undefined u:
                throw u.Fail();
            case Namespace ns:
                return ns.TryGetValue(name, out var nv) ? nv : Undefined.ForAttribute(obj, name);
            case LoopContext loop:
                return loop.GetAttribute(name);
        }
        if (obj is not null && PyMethods.HasMethod(obj, name)) return MethodOrUnsafe(obj, name);
        if (obj is PyDict dict && dict.TryGetValue(name, out var value)) return value;
        return Undefined.ForAttribute(obj, name);
    }

    /// <summary><c>obj[key]</c>: the item first, then for a string key the attribute (Jinja's getitem).</summary>
    public static object? GetItem(object? obj, object? key)
    {
        switch (obj)
        {
            case Undefined u:
                throw u.Fail();
            case PyDict dict:
                if (key is not null && dict.TryGetValue(key, out var value)) return value;
                break;
            case IReadOnlyList<object?> list when key is long or bool:
                var i = PyOps.ToLong(key);
                if (i < 0) i += list.Count;
                if (i >= 0 && i < list.Count) return list[(int)i];
                return Undefined.ForElement(obj, key);
            case string s when key is long or bool:
                var j = PyOps.ToLong(key);
                if (j < 0) j += s.Length;
                if (j >= 0 && j < s.Length) return s[(int)j].ToString();
                return Undefined.ForElement(obj, key);
            case Namespace or LoopContext when key is string name:
                return GetAttr(obj, name);
        }
        if (key is string attr && obj is not null && PyMethods.HasMethod(obj, attr)) return MethodOrUnsafe(obj, attr);
        return key is string ? Undefined.ForAttribute(obj, key) : Undefined.ForElement(obj, key);
    }

    /// <summary>The immutable sandbox turns methods that mutate a list or dict into an error on use.</summary>
    private static object MethodOrUnsafe(object obj, string name) =>
        PyMethods.IsMutating(obj, name)
            ? new BuiltinFunction(name, (_, _, _) => throw new TemplateRenderException(
                $"access to attribute '{name}' of '{PyOps.TypeName(obj)}' object is unsafe."))
            : new BoundMethod(obj, name);

    private object? Slice(object? target, SliceExpr s, Scope scope)
    {
        long? Bound(Expr? e)
        {
            if (e is null) return null;
            var v = Eval(e, scope);
            return v switch
            {
                null => null,
                long or bool => PyOps.ToLong(v),
                _ => throw new TemplateRenderException("slice indices must be integers or None"),
            };
        }
        long? start = Bound(s.Start), stop = Bound(s.Stop), step = Bound(s.Step);
        return target switch
        {
            string str => string.Concat(SliceIndices(str.Length, start, stop, step).Select(i => str[i])),
            List<object?> list => SliceIndices(list.Count, start, stop, step).Select(i => list[i]).ToList(),
            PyTuple t => new PyTuple(SliceIndices(t.Count, start, stop, step).Select(i => t[i]).ToArray()),
            Undefined u => throw u.Fail(),
            _ => throw new TemplateRenderException($"'{PyOps.TypeName(target)}' object is not subscriptable"),
        };
    }

    /// <summary>The indices Python's slice(start, stop, step).indices(length) walks.</summary>
    public static IEnumerable<int> SliceIndices(int length, long? start, long? stop, long? step)
    {
        var st = step ?? 1;
        if (st == 0) throw new TemplateRenderException("slice step cannot be zero");
        long Clamp(long? v, long dflt, long lo, long hi)
        {
            if (v is null) return dflt;
            var x = v.Value < 0 ? v.Value + length : v.Value;
            return Math.Clamp(x, lo, hi);
        }
        if (st > 0)
        {
            var a = Clamp(start, 0, 0, length);
            var b = Clamp(stop, length, 0, length);
            for (var i = a; i < b; i += st) yield return (int)i;
        }
        else
        {
            var a = Clamp(start, length - 1, -1, length - 1);
            var b = Clamp(stop, -1, -1, length - 1);
            for (var i = a; i > b; i += st) yield return (int)i;
        }
    }
}
