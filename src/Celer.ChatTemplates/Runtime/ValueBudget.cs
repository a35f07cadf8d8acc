namespace Celer.ChatTemplates.Runtime;

/// <summary>
/// Bounds on the values a render builds, checked before they are allocated: <c>{{ "x" * 1000000000 }}</c> or
/// <c>([0] * 100000000) | length</c> fail at once instead of taking gigabytes, and repeated doubling stops at the
/// bound. The output limit alone cannot do this: such values never reach the output. The bounds are those of the
/// render running on this thread (a render is synchronous), set by <see cref="Interpreter.Render"/>.
/// </summary>
internal static class ValueBudget
{
    [ThreadStatic] private static TemplateLimits? t_limits;

    private static TemplateLimits Limits => t_limits ?? TemplateLimits.Default;

    /// <summary>Makes <paramref name="limits"/> the bounds of this thread until the returned scope is disposed.</summary>
    public static Scope Enter(TemplateLimits limits)
    {
        var previous = t_limits;
        t_limits = limits;
        return new Scope(previous);
    }

    /// <summary>Throws unless a string of <paramref name="length"/> characters is within bounds.</summary>
    public static void Chars(long length)
    {
        if (length > Limits.MaxValueChars)
            throw new TemplateRenderException($"a string of {length} characters exceeds the limit of {Limits.MaxValueChars}");
    }

    /// <summary>Throws unless a list of <paramref name="count"/> items is within bounds.</summary>
    public static void Items(long count)
    {
        if (count > Limits.MaxListItems)
            throw new TemplateRenderException($"a list of {count} items exceeds the limit of {Limits.MaxListItems}");
    }

    public readonly struct Scope(TemplateLimits? previous) : IDisposable
    {
        public void Dispose() => t_limits = previous;
    }
}
