namespace Celer.ChatTemplates.Runtime;

/// <summary>
/// The functions a chat template can call: Jinja's <c>namespace</c>, <c>range</c> and <c>dict</c>, and the two
/// transformers adds, <c>raise_exception(message)</c> and <c>strftime_now(format)</c>.
/// </summary>
internal static class Globals
{
    // jinja2.sandbox.MAX_RANGE: the sandbox refuses bigger ranges.
    private const long MaxRange = 100_000;

    public static void AddTo(Scope scope, Func<DateTimeOffset> clock)
    {
        scope.Set("raise_exception", new BuiltinFunction("raise_exception", (_, args, _) =>
            throw new TemplateRenderException(args.Count > 0 ? PyOps.Str(args[0]) : "", raisedByTemplate: true)));
        scope.Set("strftime_now", new BuiltinFunction("strftime_now", (_, args, _) =>
            Strftime.Format(clock(), args.Count > 0 ? PyOps.Str(args[0]) : throw new TemplateRenderException("strftime_now() needs a format"))));
        scope.Set("namespace", new BuiltinFunction("namespace", (_, args, kwargs) =>
        {
            var ns = new Namespace();
            foreach (var arg in args)
            {
                if (arg is not PyDict init) throw new TemplateRenderException("namespace() positional arguments must be mappings");
                foreach (var (k, v) in init) ns[PyOps.Str(k)] = v;
            }
            foreach (var (k, v) in kwargs) ns[k] = v;
            return ns;
        }));
        scope.Set("dict", new BuiltinFunction("dict", (_, args, kwargs) =>
        {
            var dict = new PyDict();
            if (args.Count > 0 && args[0] is PyDict init)
            {
                foreach (var (k, v) in init) dict[k] = v;
            }
            foreach (var (k, v) in kwargs) dict[k] = v;
            return dict;
        }));
        scope.Set("range", new BuiltinFunction("range", (interpreter, args, _) => Range(interpreter, args)));
    }

    private static List<object?> Range(Interpreter interpreter, IReadOnlyList<object?> args)
    {
        long Int(int i) => args[i] is long or bool ? PyOps.ToLong(args[i])
            : throw new TemplateRenderException($"'{PyOps.TypeName(args[i])}' object cannot be interpreted as an integer");
        var (start, stop, step) = args.Count switch
        {
            1 => (0L, Int(0), 1L),
            2 => (Int(0), Int(1), 1L),
            3 => (Int(0), Int(1), Int(2)),
            _ => throw new TemplateRenderException($"range expected 1 to 3 arguments, got {args.Count}"),
        };
        if (step == 0) throw new TemplateRenderException("range() arg 3 must not be zero");
        var count = step > 0 ? Math.Max(0, (stop - start + step - 1) / step) : Math.Max(0, (start - stop - step - 1) / -step);
        if (count > MaxRange)
            throw new TemplateRenderException($"Range too big. The sandbox blocks ranges larger than MAX_RANGE ({MaxRange}).");
        var result = new List<object?>((int)count);
        for (var i = 0L; i < count; i++)
        {
            interpreter.Step();
            result.Add(start + i * step);
        }
        return result;
    }
}
