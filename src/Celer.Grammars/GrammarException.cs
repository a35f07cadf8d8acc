namespace Celer.Grammars;

/// <summary>
/// A grammar, schema or pattern that cannot be compiled: an unsupported keyword or construct, a syntax error, a
/// reference to nothing, left recursion. The message names what is wrong and where, for a 400 to the client.
/// </summary>
public sealed class GrammarException(string message) : Exception(message);
