using Celer.ChatTemplates.Syntax;

namespace Celer.ChatTemplates.Runtime;

/// <summary>A <c>{% macro %}</c>: calling it renders its body in a fresh scope and returns the text.</summary>
internal sealed class Macro(MacroStmt definition, Scope closure) : PyCallable
{
    public override object? Invoke(Interpreter interpreter, IReadOnlyList<object?> args, IReadOnlyDictionary<string, object?> kwargs)
    {
        var parameters = definition.Params;
        if (args.Count > parameters.Count)
            throw new TemplateRenderException($"macro '{definition.Name}' takes not more than {parameters.Count} argument(s)");
        foreach (var key in kwargs.Keys)
        {
            if (!parameters.Any(p => p.Name == key))
                throw new TemplateRenderException($"macro '{definition.Name}' takes no keyword argument '{key}'");
        }
        var scope = new Scope(closure);
        for (var i = 0; i < parameters.Count; i++)
        {
            var p = parameters[i];
            object? value;
            if (i < args.Count) value = args[i];
            else if (kwargs.TryGetValue(p.Name, out var kw)) value = kw;
            else if (p.Default is not null) value = interpreter.Eval(p.Default, scope);
            else value = new Undefined($"parameter '{p.Name}' was not provided");
            scope.Set(p.Name, value);
        }
        return interpreter.Capture(definition.Body, scope, definition.Line);
    }
}
