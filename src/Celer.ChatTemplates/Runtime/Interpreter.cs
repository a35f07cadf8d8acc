using System.Diagnostics;
using System.Text;
using Celer.ChatTemplates.Syntax;

namespace Celer.ChatTemplates.Runtime;

/// <summary>Walks the syntax tree for one render, enforcing <see cref="TemplateLimits"/>.</summary>
internal sealed partial class Interpreter
{
    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    // Checking the clock on every step would dominate small renders; every 1024 steps is still sub-millisecond.
    private const int ClockCheckInterval = 1024;

    private readonly TemplateLimits _limits;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Stack<StringBuilder> _outputs = new();
    private long _steps;
    private int _depth;
    private int _loopDepth;

    public Interpreter(TemplateLimits limits)
    {
        _limits = limits;
    }

    public string Render(List<Stmt> body, Scope globals)
    {
        using var budget = ValueBudget.Enter(_limits);
        _outputs.Push(new StringBuilder());
        var flow = Exec(body, new Scope(globals));
        Debug.Assert(flow == Flow.Normal, "the parser only accepts break/continue inside loops");
        return _outputs.Pop().ToString();
    }

    /// <summary>Renders a body into a string of its own: macro calls, block set and filter blocks.</summary>
    public string Capture(List<Stmt> body, Scope scope, int line)
    {
        EnterDepth(line);
        _outputs.Push(new StringBuilder());
        try
        {
            Exec(body, scope);
            return _outputs.Peek().ToString();
        }
        finally
        {
            _outputs.Pop();
            _depth--;
        }
    }

    private void Write(string text)
    {
        var sb = _outputs.Peek();
        if (sb.Length + text.Length > _limits.MaxOutputChars)
            throw new TemplateRenderException($"rendered output exceeds the limit of {_limits.MaxOutputChars} characters");
        sb.Append(text);
    }

    public void Step()
    {
        if (++_steps > _limits.MaxSteps)
            throw new TemplateRenderException($"template exceeded the limit of {_limits.MaxSteps} evaluation steps");
        if (_steps % ClockCheckInterval == 0 && _clock.Elapsed > _limits.Timeout)
            throw new TemplateRenderException($"template rendering exceeded the time limit of {_limits.Timeout.TotalMilliseconds:0} ms");
    }

    private void EnterDepth(int line)
    {
        if (++_depth > _limits.MaxDepth)
        {
            _depth--;
            throw new TemplateRenderException($"maximum recursion depth of {_limits.MaxDepth} exceeded (line {line})");
        }
    }

    // ------------------------------------------------------------------ statements

    private Flow Exec(List<Stmt> body, Scope scope)
    {
        foreach (var stmt in body)
        {
            Step();
            var flow = ExecOne(stmt, scope);
            if (flow != Flow.Normal) return flow;
        }
        return Flow.Normal;
    }

    private Flow ExecOne(Stmt stmt, Scope scope)
    {
        switch (stmt)
        {
            case TextStmt t:
                Write(t.Text);
                return Flow.Normal;
            case OutputStmt o:
                Write(PyOps.Str(Eval(o.Value, scope)));
                return Flow.Normal;
            case IfStmt s:
                foreach (var (test, branch) in s.Branches)
                {
                    if (PyOps.IsTruthy(Eval(test, scope))) return Exec(branch, scope);
                }
                return Exec(s.Else, scope);
            case ForStmt f:
                return ExecFor(f, scope);
            case SetStmt s:
                Assign(s.Target, Eval(s.Value, scope), scope);
                return Flow.Normal;
            case SetBlockStmt s:
                object? captured = Capture(s.Body, scope, s.Line);
                if (s.Filter is not null) captured = ApplyFilterChain(s.Filter, captured, scope);
                Assign(s.Target, captured, scope);
                return Flow.Normal;
            case MacroStmt m:
                scope.Set(m.Name, new Macro(m, scope));
                return Flow.Normal;
            case FilterBlockStmt fb:
                Write(PyOps.Str(ApplyFilterChain(fb.Filter, Capture(fb.Body, new Scope(scope), fb.Line), scope)));
                return Flow.Normal;
            case ScopeStmt sc:
                Write(Capture(sc.Body, new Scope(scope), sc.Line));
                return Flow.Normal;
            case BreakStmt b:
                if (_loopDepth == 0) throw new TemplateRenderException($"'break' outside of a loop (line {b.Line})");
                return Flow.Break;
            case ContinueStmt c:
                if (_loopDepth == 0) throw new TemplateRenderException($"'continue' outside of a loop (line {c.Line})");
                return Flow.Continue;
            default:
                throw new UnreachableException(stmt.GetType().Name);
        }
    }

    private Flow ExecFor(ForStmt f, Scope scope)
    {
        var source = PyOps.Iterate(Eval(f.Iter, scope));
        var loopScope = new Scope(scope);
        IReadOnlyList<object?> items = source;
        if (f.Filter is not null)
        {
            // loop.index/length count only the items that pass the filter, as in Jinja.
            var kept = new List<object?>();
            foreach (var item in source)
            {
                Step();
                Assign(f.Target, item, loopScope);
                if (PyOps.IsTruthy(Eval(f.Filter, loopScope))) kept.Add(item);
            }
            items = kept;
        }
        if (items.Count == 0) return Exec(f.Else, scope);

        scope.TryGet("loop", out var outer);
        var loop = new LoopContext(items, outer is LoopContext o ? o.Depth0 + 1 : 0);
        _loopDepth++;
        try
        {
            for (var i = 0; i < items.Count; i++)
            {
                Step();
                loop.Index0 = i;
                loopScope.Set("loop", loop);
                Assign(f.Target, items[i], loopScope);
                if (Exec(f.Body, loopScope) == Flow.Break) break;
            }
        }
        finally
        {
            _loopDepth--;
        }
        return Flow.Normal;
    }

    private static void Assign(Expr target, object? value, Scope scope)
    {
        switch (target)
        {
            case NameExpr n:
                scope.Set(n.Name, value);
                break;
            case GetAttrExpr { Target: NameExpr ns } attr:
                if (!scope.TryGet(ns.Name, out var obj) || obj is not Namespace space)
                    throw new TemplateRenderException($"cannot assign attribute on non-namespace object (line {attr.Line})");
                space[attr.Name] = value;
                break;
            case TupleExpr t:
                var values = value is string or IReadOnlyList<object?> or PyDict ? PyOps.Iterate(value)
                    : throw new TemplateRenderException($"cannot unpack non-iterable {PyOps.TypeName(value)} object");
                if (values.Count != t.Items.Count)
                    throw new TemplateRenderException(values.Count > t.Items.Count
                        ? $"too many values to unpack (expected {t.Items.Count})"
                        : $"not enough values to unpack (expected {t.Items.Count}, got {values.Count})");
                for (var i = 0; i < values.Count; i++) Assign(t.Items[i], values[i], scope);
                break;
            default:
                throw new TemplateRenderException($"can't assign to {target.GetType().Name} (line {target.Line})");
        }
    }

    private object? ApplyFilterChain(FilterExpr filter, object? input, Scope scope)
    {
        var value = filter.Target is FilterExpr inner ? ApplyFilterChain(inner, input, scope) : input;
        var (args, kwargs) = EvalArgs(filter.Args, scope);
        return Filters.Apply(this, filter.Name, value, args, kwargs);
    }
}
