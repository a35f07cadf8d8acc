namespace Celer.ChatTemplates.Syntax;

/// <summary>
/// Recursive-descent parser mirroring jinja2/parser.py, so precedence matches Jinja exactly:
/// condexpr &lt; or &lt; and &lt; not &lt; compare (in, not in, ==, ...) &lt; + - &lt; ~ &lt; * / // % &lt; ** &lt;
/// unary - &lt; postfix (. [] ()) and filters/tests (which bind to the unary operand: <c>-x|abs</c> is <c>(-x)|abs</c>).
/// </summary>
internal sealed class Parser
{
    private static readonly HashSet<string> CompareOps = ["==", "!=", "<", "<=", ">", ">="];

    // Tags that need a template loader or another environment feature transformers does not give chat templates.
    private static readonly HashSet<string> UnsupportedTags = ["include", "import", "from", "extends", "block", "call", "do", "with", "autoescape"];

    private readonly List<Token> _tokens;
    private readonly int _maxDepth;
    private int _index;
    private int _depth;

    private Parser(List<Token> tokens, int maxDepth)
    {
        _tokens = tokens;
        _maxDepth = maxDepth;
    }

    public static List<Stmt> Parse(string source, int maxDepth)
    {
        var parser = new Parser(Lexer.Tokenize(source), maxDepth);
        var body = parser.ParseBody([]);
        if (parser.Current.Kind != TokenKind.Eof)
            throw parser.Error($"Encountered unknown tag '{parser.Current.Text}'.");
        return body;
    }

    private Token Current => _tokens[_index];

    private Token Peek(int offset = 1) => _tokens[Math.Min(_index + offset, _tokens.Count - 1)];

    private Token Next() => _tokens[_index++];

    private TemplateSyntaxException Error(string message, Token? at = null) => new(message, (at ?? Current).Line);

    private Token Expect(TokenKind kind, string? text = null)
    {
        var t = Current;
        if (t.Kind != kind || (text is not null && t.Text != text))
        {
            var wanted = text is not null ? $"'{text}'" : kind switch
            {
                TokenKind.BlockEnd => "end of statement block",
                TokenKind.VariableEnd => "end of print statement",
                TokenKind.Name => "name",
                _ => kind.ToString(),
            };
            throw Error($"expected token {wanted}, got {t}");
        }
        _index++;
        return t;
    }

    private bool SkipOperator(string op)
    {
        if (!Current.IsOperator(op)) return false;
        _index++;
        return true;
    }

    private bool SkipName(string name)
    {
        if (!Current.IsName(name)) return false;
        _index++;
        return true;
    }

    private void Enter()
    {
        if (++_depth > _maxDepth) throw Error($"template nesting is deeper than the limit of {_maxDepth}");
    }

    // ------------------------------------------------------------------ statements

    /// <summary>Parses until a block tag named in <paramref name="endTags"/> (left as the current token) or the end.</summary>
    private List<Stmt> ParseBody(string[] endTags)
    {
        var body = new List<Stmt>();
        while (true)
        {
            var t = Current;
            switch (t.Kind)
            {
                case TokenKind.Eof:
                    if (endTags.Length > 0)
                        throw Error($"Unexpected end of template. Jinja was looking for the following tags: {string.Join(" or ", endTags.Select(e => $"'{e}'"))}.");
                    return body;
                case TokenKind.Data:
                    body.Add(new TextStmt(t.Text, t.Line));
                    _index++;
                    break;
                case TokenKind.VariableBegin:
                    _index++;
                    var expr = ParseTuple();
                    Expect(TokenKind.VariableEnd);
                    body.Add(new OutputStmt(expr, t.Line));
                    break;
                case TokenKind.BlockBegin:
                    var tag = Peek();
                    if (tag.Kind == TokenKind.Name && endTags.Contains(tag.Text))
                    {
                        _index++;
                        return body;
                    }
                    _index++;
                    body.Add(ParseStatement());
                    break;
                default:
                    throw Error($"unexpected {t}");
            }
        }
    }

    private Stmt ParseStatement()
    {
        var tag = Current;
        if (tag.Kind != TokenKind.Name) throw Error("tag name expected");
        Enter();
        try
        {
            switch (tag.Text)
            {
                case "if": _index++; return ParseIf(tag.Line);
                case "for": _index++; return ParseFor(tag.Line);
                case "set": _index++; return ParseSet(tag.Line);
                case "macro": _index++; return ParseMacro(tag.Line);
                case "filter": _index++; return ParseFilterBlock(tag.Line);
                case "generation":
                    _index++;
                    Expect(TokenKind.BlockEnd);
                    var body = ParseBody(["endgeneration"]);
                    EndTag();
                    return new ScopeStmt(body, tag.Line);
                case "break":
                case "continue":
                    _index++;
                    Expect(TokenKind.BlockEnd);
                    return tag.Text == "break" ? new BreakStmt(tag.Line) : new ContinueStmt(tag.Line);
                default:
                    if (UnsupportedTags.Contains(tag.Text))
                        throw Error($"'{tag.Text}' is not supported in chat templates (sandboxed, no template loader)");
                    throw Error($"Encountered unknown tag '{tag.Text}'.");
            }
        }
        finally
        {
            _depth--;
        }
    }

    /// <summary>Consumes the name of an end tag (already current) and its closing %}.</summary>
    private void EndTag()
    {
        _index++;
        Expect(TokenKind.BlockEnd);
    }

    private IfStmt ParseIf(int line)
    {
        var branches = new List<(Expr, List<Stmt>)>();
        var test = ParseTuple(withCondExpr: false);
        while (true)
        {
            Expect(TokenKind.BlockEnd);
            var body = ParseBody(["elif", "else", "endif"]);
            branches.Add((test, body));
            var tag = Next();
            if (tag.Text == "elif")
            {
                test = ParseTuple(withCondExpr: false);
                continue;
            }
            if (tag.Text == "else")
            {
                Expect(TokenKind.BlockEnd);
                var elseBody = ParseBody(["endif"]);
                EndTag();
                return new IfStmt(branches, elseBody, line);
            }
            Expect(TokenKind.BlockEnd);
            return new IfStmt(branches, [], line);
        }
    }

    private ForStmt ParseFor(int line)
    {
        var target = ParseAssignTarget(allowNamespace: false);
        Expect(TokenKind.Name, "in");
        // The iterable is parsed without an inline "if" so that "for x in xs if cond" is the loop filter.
        var iter = ParseTuple(withCondExpr: false);
        Expr? filter = null;
        if (SkipName("if")) filter = ParseExpression();
        if (Current.IsName("recursive")) throw Error("recursive loops are not supported");
        Expect(TokenKind.BlockEnd);
        var body = ParseBody(["endfor", "else"]);
        List<Stmt> elseBody = [];
        if (Next().Text == "else")
        {
            Expect(TokenKind.BlockEnd);
            elseBody = ParseBody(["endfor"]);
            _index++;
        }
        Expect(TokenKind.BlockEnd);
        return new ForStmt(target, iter, filter, body, elseBody, line);
    }

    private Stmt ParseSet(int line)
    {
        var target = ParseAssignTarget(allowNamespace: true);
        if (SkipOperator("="))
        {
            var value = ParseTuple();
            Expect(TokenKind.BlockEnd);
            return new SetStmt(target, value, line);
        }
        FilterExpr? filter = null;
        if (Current.IsOperator("|")) filter = (FilterExpr)ParseFilters(null);
        Expect(TokenKind.BlockEnd);
        var body = ParseBody(["endset"]);
        EndTag();
        return new SetBlockStmt(target, filter, body, line);
    }

    private Expr ParseAssignTarget(bool allowNamespace)
    {
        var first = ParseSingleTarget(allowNamespace);
        if (!Current.IsOperator(",")) return first;
        var items = new List<Expr> { first };
        while (SkipOperator(","))
        {
            if (Current.Kind != TokenKind.Name) break;
            items.Add(ParseSingleTarget(allowNamespace: false));
        }
        return new TupleExpr(items, first.Line);
    }

    private Expr ParseSingleTarget(bool allowNamespace)
    {
        if (SkipOperator("("))
        {
            var inner = ParseAssignTarget(allowNamespace: false);
            Expect(TokenKind.Operator, ")");
            return inner;
        }
        var name = Expect(TokenKind.Name);
        if (name.Text is "true" or "false" or "none" or "True" or "False" or "None")
            throw Error($"Can't assign to '{name.Text}'", name);
        if (allowNamespace && Current.IsOperator(".") && Peek().Kind == TokenKind.Name)
        {
            _index++;
            var attr = Next();
            return new GetAttrExpr(new NameExpr(name.Text, name.Line), attr.Text, name.Line);
        }
        return new NameExpr(name.Text, name.Line);
    }

    private MacroStmt ParseMacro(int line)
    {
        var name = Expect(TokenKind.Name).Text;
        Expect(TokenKind.Operator, "(");
        var parameters = new List<MacroParam>();
        while (!SkipOperator(")"))
        {
            if (parameters.Count > 0) Expect(TokenKind.Operator, ",");
            if (SkipOperator(")")) break;
            var param = Expect(TokenKind.Name).Text;
            Expr? defaultValue = SkipOperator("=") ? ParseExpression() : null;
            if (defaultValue is null && parameters.Any(p => p.Default is not null))
                throw Error("non-default argument follows default argument");
            parameters.Add(new MacroParam(param, defaultValue));
        }
        Expect(TokenKind.BlockEnd);
        var body = ParseBody(["endmacro"]);
        EndTag();
        return new MacroStmt(name, parameters, body, line);
    }

    private FilterBlockStmt ParseFilterBlock(int line)
    {
        var filter = (FilterExpr)ParseFilters(null, leadingPipe: false);
        Expect(TokenKind.BlockEnd);
        var body = ParseBody(["endfilter"]);
        EndTag();
        return new FilterBlockStmt(filter, body, line);
    }

    // ------------------------------------------------------------------ expressions

    /// <summary>Comma-separated expressions: one gives itself, several give a tuple (<c>{{ a, b }}</c>, <c>set x = 1, 2</c>).</summary>
    private Expr ParseTuple(bool withCondExpr = true, bool explicitParens = false)
    {
        var line = Current.Line;
        var items = new List<Expr>();
        var sawComma = false;
        while (true)
        {
            if (items.Count > 0)
            {
                if (!SkipOperator(",")) break;
                sawComma = true;
            }
            if (IsTupleEnd()) break;
            items.Add(withCondExpr ? ParseExpression() : ParseOr());
        }
        if (!sawComma)
        {
            if (items.Count > 0) return items[0];
            if (!explicitParens) throw Error($"Expected an expression, got {Current}");
        }
        return new TupleExpr(items, line);
    }

    private bool IsTupleEnd() =>
        Current.Kind is TokenKind.VariableEnd or TokenKind.BlockEnd or TokenKind.Eof
        || Current.IsOperator(")");

    private Expr ParseExpression()
    {
        Enter();
        try
        {
            var expr = ParseOr();
            while (Current.IsName("if"))
            {
                var line = Next().Line;
                var test = ParseOr();
                Expr? otherwise = SkipName("else") ? ParseExpression() : null;
                expr = new CondExpr(test, expr, otherwise, line);
            }
            return expr;
        }
        finally
        {
            _depth--;
        }
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Current.IsName("or"))
        {
            var line = Next().Line;
            left = new BinaryExpr("or", left, ParseAnd(), line);
        }
        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Current.IsName("and"))
        {
            var line = Next().Line;
            left = new BinaryExpr("and", left, ParseNot(), line);
        }
        return left;
    }

    private Expr ParseNot()
    {
        if (Current.IsName("not"))
        {
            var line = Next().Line;
            Enter();
            try
            {
                return new UnaryExpr("not", ParseNot(), line);
            }
            finally
            {
                _depth--;
            }
        }
        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var line = Current.Line;
        var first = ParseMath1();
        var rest = new List<(string, Expr)>();
        while (true)
        {
            if (Current.Kind == TokenKind.Operator && CompareOps.Contains(Current.Text))
            {
                var op = Next().Text;
                rest.Add((op, ParseMath1()));
            }
            else if (SkipName("in"))
            {
                rest.Add(("in", ParseMath1()));
            }
            else if (Current.IsName("not") && Peek().IsName("in"))
            {
                _index += 2;
                rest.Add(("notin", ParseMath1()));
            }
            else
            {
                break;
            }
        }
        return rest.Count == 0 ? first : new CompareExpr(first, rest, line);
    }

    private Expr ParseMath1()
    {
        var left = ParseConcat();
        while (Current.IsOperator("+") || Current.IsOperator("-"))
        {
            var op = Next();
            left = new BinaryExpr(op.Text, left, ParseConcat(), op.Line);
        }
        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMath2();
        while (Current.IsOperator("~"))
        {
            var op = Next();
            left = new BinaryExpr("~", left, ParseMath2(), op.Line);
        }
        return left;
    }

    private Expr ParseMath2()
    {
        var left = ParsePow();
        while (Current.Kind == TokenKind.Operator && Current.Text is "*" or "/" or "//" or "%")
        {
            var op = Next();
            left = new BinaryExpr(op.Text, left, ParsePow(), op.Line);
        }
        return left;
    }

    private Expr ParsePow()
    {
        var left = ParseUnary();
        while (Current.IsOperator("**"))
        {
            var op = Next();
            left = new BinaryExpr("**", left, ParseUnary(), op.Line);
        }
        return left;
    }

    private Expr ParseUnary(bool withFilter = true)
    {
        Enter();
        try
        {
            Expr node;
            if (Current.IsOperator("-") || Current.IsOperator("+"))
            {
                var op = Next();
                node = new UnaryExpr(op.Text, ParseUnary(withFilter: false), op.Line);
            }
            else
            {
                node = ParsePrimary();
            }
            node = ParsePostfix(node);
            return withFilter ? ParseFilters(node) : node;
        }
        finally
        {
            _depth--;
        }
    }

    private Expr ParsePrimary()
    {
        var t = Next();
        switch (t.Kind)
        {
            case TokenKind.Name:
                return t.Text switch
                {
                    "true" or "True" => new ConstExpr(true, t.Line),
                    "false" or "False" => new ConstExpr(false, t.Line),
                    "none" or "None" => new ConstExpr(null, t.Line),
                    _ => new NameExpr(t.Text, t.Line),
                };
            case TokenKind.String:
                // Adjacent literals concatenate, as in Python.
                var text = t.Text;
                while (Current.Kind == TokenKind.String) text += Next().Text;
                return new ConstExpr(text, t.Line);
            case TokenKind.Integer:
            case TokenKind.Float:
                return new ConstExpr(t.Value, t.Line);
            case TokenKind.Operator when t.Text == "(":
                var inner = ParseTuple(explicitParens: true);
                Expect(TokenKind.Operator, ")");
                return inner;
            case TokenKind.Operator when t.Text == "[":
                var items = new List<Expr>();
                while (!SkipOperator("]"))
                {
                    if (items.Count > 0) Expect(TokenKind.Operator, ",");
                    if (SkipOperator("]")) break;
                    items.Add(ParseExpression());
                }
                return new ListExpr(items, t.Line);
            case TokenKind.Operator when t.Text == "{":
                var pairs = new List<(Expr, Expr)>();
                while (!SkipOperator("}"))
                {
                    if (pairs.Count > 0) Expect(TokenKind.Operator, ",");
                    if (SkipOperator("}")) break;
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    pairs.Add((key, ParseExpression()));
                }
                return new DictExpr(pairs, t.Line);
            default:
                throw Error($"unexpected {t}", t);
        }
    }

    private Expr ParsePostfix(Expr node)
    {
        while (true)
        {
            var t = Current;
            if (t.IsOperator("."))
            {
                _index++;
                var attr = Next();
                node = attr.Kind switch
                {
                    TokenKind.Name => new GetAttrExpr(node, attr.Text, t.Line),
                    TokenKind.Integer => new GetItemExpr(node, new ConstExpr(attr.Value, attr.Line), t.Line),
                    _ => throw Error("expected name or number after '.'", attr),
                };
            }
            else if (t.IsOperator("["))
            {
                _index++;
                var keys = new List<Expr>();
                while (!SkipOperator("]"))
                {
                    if (keys.Count > 0) Expect(TokenKind.Operator, ",");
                    keys.Add(ParseSubscript());
                }
                if (keys.Count == 0) throw Error("expected subscript expression");
                node = new GetItemExpr(node, keys.Count == 1 ? keys[0] : new TupleExpr(keys, t.Line), t.Line);
            }
            else if (t.IsOperator("("))
            {
                _index++;
                node = new CallExpr(node, ParseCallArgs(), t.Line);
            }
            else
            {
                return node;
            }
        }
    }

    private Expr ParseSubscript()
    {
        var line = Current.Line;
        Expr? start = null;
        if (!Current.IsOperator(":"))
        {
            start = ParseExpression();
            if (!Current.IsOperator(":")) return start;
        }
        _index++; // ':'
        Expr? stop = null, step = null;
        if (!Current.IsOperator("]") && !Current.IsOperator(",") && !Current.IsOperator(":")) stop = ParseExpression();
        if (SkipOperator(":") && !Current.IsOperator("]") && !Current.IsOperator(",")) step = ParseExpression();
        return new SliceExpr(start, stop, step, line);
    }

    /// <summary>Arguments after an already consumed "(": positional, then name=value.</summary>
    private CallArgs ParseCallArgs()
    {
        var positional = new List<Expr>();
        var keyword = new List<(string, Expr)>();
        while (!SkipOperator(")"))
        {
            if (positional.Count + keyword.Count > 0)
            {
                Expect(TokenKind.Operator, ",");
                if (SkipOperator(")")) break;
            }
            if (Current.IsOperator("*") || Current.IsOperator("**")) throw Error("*args and **kwargs in calls are not supported");
            if (Current.Kind == TokenKind.Name && Peek().IsOperator("="))
            {
                var name = Next().Text;
                _index++;
                keyword.Add((name, ParseExpression()));
            }
            else
            {
                if (keyword.Count > 0) throw Error("invalid syntax for function call expression");
                positional.Add(ParseExpression());
            }
        }
        return new CallArgs(positional, keyword);
    }

    /// <summary>Filters (<c>| name(args)</c>), tests (<c>is [not] name args</c>) and calls chained on a unary operand.</summary>
    private Expr ParseFilters(Expr? node, bool leadingPipe = true)
    {
        var first = true;
        while (true)
        {
            // A {% filter %} block starts with the filter name itself; everywhere else a filter follows "|".
            var bareFirstFilter = !leadingPipe && first;
            if (bareFirstFilter || Current.IsOperator("|"))
            {
                if (!bareFirstFilter) _index++;
                first = false;
                var nameToken = Expect(TokenKind.Name);
                var name = nameToken.Text;
                while (Current.IsOperator(".") && Peek().Kind == TokenKind.Name)
                {
                    _index++;
                    name += "." + Next().Text;
                }
                var args = SkipOperator("(") ? ParseCallArgs() : CallArgs.None;
                node = new FilterExpr(node, name, args, nameToken.Line);
            }
            else if (Current.IsName("is") && node is not null)
            {
                var line = Next().Line;
                var negated = SkipName("not");
                var name = Expect(TokenKind.Name).Text;
                while (Current.IsOperator(".") && Peek().Kind == TokenKind.Name)
                {
                    _index++;
                    name += "." + Next().Text;
                }
                CallArgs args;
                if (SkipOperator("("))
                {
                    args = ParseCallArgs();
                }
                else if (StartsTestArgument())
                {
                    if (Current.IsName("is")) throw Error("You cannot chain multiple tests with is");
                    args = new CallArgs([ParsePostfix(ParsePrimary())], []);
                }
                else
                {
                    args = CallArgs.None;
                }
                node = new TestExpr(node, name, args, negated, line);
            }
            else if (Current.IsOperator("(") && node is not null)
            {
                var line = Next().Line;
                node = new CallExpr(node, ParseCallArgs(), line);
            }
            else
            {
                return node ?? throw Error("filter expected");
            }
        }
    }

    /// <summary>Jinja lets a test take one argument without parentheses: <c>x is divisibleby 3</c>, <c>x is sameas none</c>.</summary>
    private bool StartsTestArgument()
    {
        var t = Current;
        if (t.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float) return true;
        if (t.IsOperator("(") || t.IsOperator("[") || t.IsOperator("{")) return true;
        return t.Kind == TokenKind.Name && t.Text is not ("else" or "or" or "and");
    }
}
