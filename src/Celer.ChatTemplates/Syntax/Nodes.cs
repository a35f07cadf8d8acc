namespace Celer.ChatTemplates.Syntax;

// The syntax tree: expressions evaluate to a value, statements write output. Each node keeps its line for errors.

internal abstract record Expr(int Line);

internal sealed record ConstExpr(object? Value, int Line) : Expr(Line);

internal sealed record NameExpr(string Name, int Line) : Expr(Line);

internal sealed record ListExpr(List<Expr> Items, int Line) : Expr(Line);

internal sealed record TupleExpr(List<Expr> Items, int Line) : Expr(Line);

internal sealed record DictExpr(List<(Expr Key, Expr Value)> Pairs, int Line) : Expr(Line);

/// <summary><c>obj.name</c>: Python attribute first, then item (Jinja's environment.getattr).</summary>
internal sealed record GetAttrExpr(Expr Target, string Name, int Line) : Expr(Line);

/// <summary><c>obj[key]</c>: item first, then attribute (Jinja's environment.getitem).</summary>
internal sealed record GetItemExpr(Expr Target, Expr Key, int Line) : Expr(Line);

internal sealed record SliceExpr(Expr? Start, Expr? Stop, Expr? Step, int Line) : Expr(Line);

internal sealed record CallArgs(List<Expr> Positional, List<(string Name, Expr Value)> Keyword)
{
    public static readonly CallArgs None = new([], []);
}

internal sealed record CallExpr(Expr Callee, CallArgs Args, int Line) : Expr(Line);

/// <summary><c>value | name(args)</c>; <see cref="Target"/> is null for the filter of a <c>{% filter %}</c> block.</summary>
internal sealed record FilterExpr(Expr? Target, string Name, CallArgs Args, int Line) : Expr(Line);

internal sealed record TestExpr(Expr Target, string Name, CallArgs Args, bool Negated, int Line) : Expr(Line);

internal sealed record UnaryExpr(string Op, Expr Operand, int Line) : Expr(Line);

/// <summary>Arithmetic, <c>~</c>, <c>and</c>, <c>or</c>.</summary>
internal sealed record BinaryExpr(string Op, Expr Left, Expr Right, int Line) : Expr(Line);

/// <summary>A comparison chain: <c>a &lt; b &lt;= c</c> is <c>a &lt; b and b &lt;= c</c>.</summary>
internal sealed record CompareExpr(Expr First, List<(string Op, Expr Operand)> Rest, int Line) : Expr(Line);

/// <summary><c>a if cond else b</c>; with no else branch a false condition gives Undefined.</summary>
internal sealed record CondExpr(Expr Test, Expr Then, Expr? Else, int Line) : Expr(Line);

internal abstract record Stmt(int Line);

internal sealed record TextStmt(string Text, int Line) : Stmt(Line);

internal sealed record OutputStmt(Expr Value, int Line) : Stmt(Line);

internal sealed record IfStmt(List<(Expr Test, List<Stmt> Body)> Branches, List<Stmt> Else, int Line) : Stmt(Line);

internal sealed record ForStmt(Expr Target, Expr Iter, Expr? Filter, List<Stmt> Body, List<Stmt> Else, int Line) : Stmt(Line);

/// <summary><c>{% set target = value %}</c>; the target is a name, <c>ns.attr</c> or a tuple of names.</summary>
internal sealed record SetStmt(Expr Target, Expr Value, int Line) : Stmt(Line);

/// <summary><c>{% set name %}body{% endset %}</c>, optionally <c>{% set name | filter %}</c>.</summary>
internal sealed record SetBlockStmt(Expr Target, FilterExpr? Filter, List<Stmt> Body, int Line) : Stmt(Line);

internal sealed record MacroParam(string Name, Expr? Default);

internal sealed record MacroStmt(string Name, List<MacroParam> Params, List<Stmt> Body, int Line) : Stmt(Line);

/// <summary><c>{% filter f %}body{% endfilter %}</c>: the rendered body is passed through the filter chain.</summary>
internal sealed record FilterBlockStmt(FilterExpr Filter, List<Stmt> Body, int Line) : Stmt(Line);

/// <summary>A nested body with its own scope: transformers' <c>{% generation %}</c> (assistant-mask tracking; renders its body).</summary>
internal sealed record ScopeStmt(List<Stmt> Body, int Line) : Stmt(Line);

internal sealed record BreakStmt(int Line) : Stmt(Line);

internal sealed record ContinueStmt(int Line) : Stmt(Line);
