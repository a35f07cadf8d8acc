namespace Celer.Grammars.Json;

/// <summary>
/// The JSON text grammar a schema's rules are built from: the layout between tokens (per
/// <see cref="JsonGrammarOptions"/>), and one shared rule each for a string, a string character, a number, an
/// integer and any value, so that every schema position that allows "any string" reuses the same rule (the matcher
/// caches per rule position).
/// </summary>
internal sealed class JsonSyntax
{
    private static readonly ByteSet WhitespaceBytes = ByteSet.Of((byte)' ').Union(ByteSet.Of((byte)'\t')).Union(ByteSet.Of((byte)'\n')).Union(ByteSet.Of((byte)'\r'));

    private readonly GrammarBuilder _builder;
    private readonly GrammarExpr? _whitespace;
    private GrammarExpr? _string, _char, _unescapedTail, _number, _integer, _value, _object;

    public JsonSyntax(GrammarBuilder builder, JsonGrammarOptions options)
    {
        _builder = builder;
        if (options.MaxWhitespace is < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(options), $"MaxWhitespace {options.MaxWhitespace} is negative.");
        }

        if (options.WhitespacePattern is { } pattern)
        {
            Grammar own;
            try
            {
                own = RegexGrammar.Compile(pattern);
            }
            catch (GrammarException e)
            {
                throw new GrammarException($"whitespace_pattern: {e.Message}");
            }

            var narrowed = SubgrammarImport.Narrow(own, WhitespaceBytes);
            if (CodePointLengths.Of(GrammarExpr.Ref(narrowed.Root), narrowed.Rules).Min is null)
            {
                throw new GrammarException($"whitespace_pattern '{pattern}' matches no run of JSON whitespace (space, tab, newline, carriage return).");
            }

            _whitespace = SubgrammarImport.Import(builder, narrowed, "ws");
        }
        else if (options.AnyWhitespace)
        {
            _whitespace = GrammarExpr.Repeat(new ByteSetExpr(WhitespaceBytes), 0, options.MaxWhitespace);
        }

        // Python's json.dumps default separators when there is no whitespace between tokens.
        Comma = _whitespace is null ? GrammarExpr.Literal(", ") : GrammarExpr.Sequence(_whitespace, GrammarExpr.Literal(","), _whitespace);
        Colon = _whitespace is null ? GrammarExpr.Literal(": ") : GrammarExpr.Sequence(_whitespace, GrammarExpr.Literal(":"), _whitespace);
        ObjectOpen = Open("{");
        ObjectClose = Close("}");
        EmptyObject = GrammarExpr.Sequence(GrammarExpr.Literal("{"), _whitespace ?? GrammarExpr.Empty, GrammarExpr.Literal("}"));
        ArrayOpen = Open("[");
        ArrayClose = Close("]");
        EmptyArray = GrammarExpr.Sequence(GrammarExpr.Literal("["), _whitespace ?? GrammarExpr.Empty, GrammarExpr.Literal("]"));
    }

    public GrammarExpr Comma { get; }

    public GrammarExpr Colon { get; }

    /// <summary>"{" and the whitespace after it, before a first member.</summary>
    public GrammarExpr ObjectOpen { get; }

    /// <summary>The whitespace after a last member, and "}".</summary>
    public GrammarExpr ObjectClose { get; }

    public GrammarExpr EmptyObject { get; }

    public GrammarExpr ArrayOpen { get; }

    public GrammarExpr ArrayClose { get; }

    public GrammarExpr EmptyArray { get; }

    /// <summary>One character of a string's content: any code point but '"', '\' and U+0000–U+001F as itself, or an escape.</summary>
    public GrammarExpr Char => _char ??= _builder.Rule("json-char", GrammarExpr.Choice(UnescapedChar(), Escape()));

    /// <summary>Any JSON string, quotes included.</summary>
    public GrammarExpr String => _string ??= _builder.Rule("json-string", Quoted(GrammarExpr.Star(Char)));

    /// <summary>The rest of a string written without escapes, closing quote included (keys of additional properties).</summary>
    public GrammarExpr UnescapedTail => _unescapedTail ??= _builder.Rule("json-unescaped-tail",
        GrammarExpr.Sequence(GrammarExpr.Star(UnescapedChar()), GrammarExpr.Literal("\"")));

    /// <summary>Any JSON number: optional minus, no leading zeros, optional fraction and exponent.</summary>
    public GrammarExpr Number => _number ??= _builder.Rule("json-number", GrammarExpr.Sequence(
        Integer,
        GrammarExpr.Optional(GrammarExpr.Sequence(GrammarExpr.Literal("."), GrammarExpr.Plus(Digit))),
        GrammarExpr.Optional(GrammarExpr.Sequence(new ByteSetExpr(ByteSet.Of((byte)'e').Union(ByteSet.Of((byte)'E'))),
            GrammarExpr.Optional(new ByteSetExpr(ByteSet.Of((byte)'+').Union(ByteSet.Of((byte)'-')))), GrammarExpr.Plus(Digit)))));

    /// <summary>Any JSON integer: a number without fraction or exponent.</summary>
    public GrammarExpr Integer => _integer ??= _builder.Rule("json-integer", GrammarExpr.Sequence(
        GrammarExpr.Optional(GrammarExpr.Literal("-")),
        GrammarExpr.Choice(GrammarExpr.Literal("0"), GrammarExpr.Sequence(new ByteSetExpr(ByteSet.Range((byte)'1', (byte)'9')), GrammarExpr.Star(Digit)))));

    /// <summary>Any JSON value: the empty schema, <c>true</c>, <c>additionalProperties: true</c>.</summary>
    public GrammarExpr Value
    {
        get
        {
            if (_value is null)
            {
                int value = _builder.Declare("json-value");
                _value = GrammarExpr.Ref(value);
                var array = _builder.Rule("json-array", GrammarExpr.Choice(
                    EmptyArray,
                    GrammarExpr.Sequence(ArrayOpen, _value, GrammarExpr.Star(GrammarExpr.Sequence(Comma, _value)), ArrayClose)));
                _builder.Define(value, GrammarExpr.Choice(
                    Object, array, String, Number, GrammarExpr.Literal("true"), GrammarExpr.Literal("false"), GrammarExpr.Literal("null")));
            }

            return _value;
        }
    }

    /// <summary>Any JSON object, with any keys (OpenAI's <c>json_object</c>).</summary>
    public GrammarExpr Object
    {
        get
        {
            if (_object is null)
            {
                int rule = _builder.Declare("json-object");
                _object = GrammarExpr.Ref(rule);
                var member = GrammarExpr.Sequence(String, Colon, Value);
                _builder.Define(rule, GrammarExpr.Choice(
                    EmptyObject,
                    GrammarExpr.Sequence(ObjectOpen, member, GrammarExpr.Star(GrammarExpr.Sequence(Comma, member)), ObjectClose)));
            }

            return _object;
        }
    }

    public static GrammarExpr Digit { get; } = new ByteSetExpr(ByteSet.Range((byte)'0', (byte)'9'));

    /// <summary>The code points a string may hold without an escape: everything but '"', '\' and U+0000–U+001F.</summary>
    public static GrammarExpr UnescapedChar() => Utf8Ranges.Complement([(0, 0x1F), ('"', '"'), ('\\', '\\')]);

    /// <summary>The bytes of the characters that need no escape in a JSON string (for narrowing a pattern).</summary>
    public static ByteSet UnescapedBytes { get; } = ByteSet.Range(0, 0x1F).Union(ByteSet.Of((byte)'"')).Union(ByteSet.Of((byte)'\\')).Complement();

    public static GrammarExpr Quoted(GrammarExpr body) => GrammarExpr.Sequence(GrammarExpr.Literal("\""), body, GrammarExpr.Literal("\""));

    // "\uXXXX" outside the surrogates: a lone surrogate is not text (System.Text.Json refuses to decode one), and a
    // pair needs no escape since the character itself can be written.
    private static GrammarExpr Escape()
    {
        var hex = new ByteSetExpr(ByteSet.Range((byte)'0', (byte)'9').Union(ByteSet.Range((byte)'a', (byte)'f')).Union(ByteSet.Range((byte)'A', (byte)'F')));
        var hexNotD = new ByteSetExpr(ByteSet.Range((byte)'0', (byte)'9').Union(ByteSet.Range((byte)'a', (byte)'c')).Union(ByteSet.Range((byte)'A', (byte)'C'))
            .Union(ByteSet.Range((byte)'e', (byte)'f')).Union(ByteSet.Range((byte)'E', (byte)'F')));
        var unicode = GrammarExpr.Sequence(GrammarExpr.Literal("u"), GrammarExpr.Choice(
            GrammarExpr.Sequence(hexNotD, hex, hex, hex),
            GrammarExpr.Sequence(new ByteSetExpr(ByteSet.Of((byte)'d').Union(ByteSet.Of((byte)'D'))), new ByteSetExpr(ByteSet.Range((byte)'0', (byte)'7')), hex, hex)));
        var simple = new ByteSetExpr("\"\\/bfnrt".Aggregate(ByteSet.Empty, (set, c) => set.Union(ByteSet.Of((byte)c))));
        return GrammarExpr.Sequence(GrammarExpr.Literal("\\"), GrammarExpr.Choice(simple, unicode));
    }

    private GrammarExpr Open(string bracket) => GrammarExpr.Sequence(GrammarExpr.Literal(bracket), _whitespace ?? GrammarExpr.Empty);

    private GrammarExpr Close(string bracket) => GrammarExpr.Sequence(_whitespace ?? GrammarExpr.Empty, GrammarExpr.Literal(bracket));
}
