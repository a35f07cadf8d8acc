namespace Celer.ChatTemplates.Syntax;

internal enum TokenKind
{
    Data,
    VariableBegin,
    VariableEnd,
    BlockBegin,
    BlockEnd,
    Name,
    String,
    Integer,
    Float,
    Operator,
    Eof,
}

/// <param name="Value">The text for Data/Name/Operator, the unescaped text for String, a long or double for numbers.</param>
internal readonly record struct Token(TokenKind Kind, object? Value, int Line)
{
    public string Text => Value as string ?? "";

    public bool IsOperator(string op) => Kind == TokenKind.Operator && Text == op;

    public bool IsName(string name) => Kind == TokenKind.Name && Text == name;

    public override string ToString() => Kind switch
    {
        TokenKind.Eof => "end of template",
        TokenKind.BlockEnd => "end of statement block",
        TokenKind.VariableEnd => "end of print statement",
        _ => $"'{Value}'",
    };
}
