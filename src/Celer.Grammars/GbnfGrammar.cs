namespace Celer.Grammars;

/// <summary>
/// llama.cpp's GBNF grammars (grammars/README.md in ggml-org/llama.cpp): <c>name ::= alternatives</c> rules over
/// code points, with strings, character classes, '.', groups and the postfix repetitions of regular expressions. The
/// rule named <c>root</c> is what the whole output must match. llama.cpp's token references (<c>&lt;think&gt;</c>,
/// <c>&lt;[123]&gt;</c>) are refused: a grammar here is over bytes, not one tokenizer's ids.
/// </summary>
public static class GbnfGrammar
{
    public static Grammar Parse(string text) => GbnfParser.Parse(text);
}
