using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using Celer.Grammars;
using Celer.Grammars.Json;
using Celer.Tokenization;

namespace Celer.Engine.StructuredOutputs;

/// <summary>
/// Compiles requests' <see cref="StructuredOutputsParams"/> into grammars over the model's vocabulary, at admission,
/// on the caller's thread (the engine loop never waits for a compilation), and keeps them by constraint so that
/// requests with the same schema share one grammar and its mask caches. The vocabulary's byte trie is built once, in
/// the background from the engine's start.
/// </summary>
public sealed class StructuredOutputCompiler
{
    // Compiled grammars kept; each holds its own mask caches (a few MB), so the bound is on memory.
    private const int MaxCachedGrammars = 64;

    private readonly Lazy<TokenVocabulary> _vocabulary;
    private readonly ConcurrentDictionary<string, Lazy<CompiledGrammar>> _grammars = new(StringComparer.Ordinal);

    /// <param name="vocabSize">The model's vocabulary (its logits rows), which may be larger than the tokenizer's.</param>
    /// <param name="endOfSequenceIds">The ids a complete output may end with: EOS and generation_config's.</param>
    public StructuredOutputCompiler(Tokenizer tokenizer, int vocabSize, IEnumerable<int> endOfSequenceIds)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        int[] eos = [.. endOfSequenceIds];
        _vocabulary = new Lazy<TokenVocabulary>(() =>
        {
            var bytes = tokenizer.TokenBytesInText();
            Array.Resize(ref bytes, vocabSize);
            return new TokenVocabulary(bytes, eos);
        });
        Task.Run(() => _vocabulary.Value);
    }

    /// <summary>The constraint as a grammar; a constraint that cannot be compiled is an <see cref="EngineRequestException"/>.</summary>
    public CompiledGrammar Compile(StructuredOutputsParams constraint)
    {
        ArgumentNullException.ThrowIfNull(constraint);
        string key = Key(constraint);
        if (_grammars.Count >= MaxCachedGrammars && !_grammars.ContainsKey(key))
        {
            _grammars.Clear();
        }

        var lazy = _grammars.GetOrAdd(key, _ => new Lazy<CompiledGrammar>(() => Build(constraint)));
        try
        {
            return lazy.Value;
        }
        catch (EngineRequestException)
        {
            // A refused constraint is not kept: its Lazy would rethrow, but the entry would hold a slot.
            _grammars.TryRemove(key, out _);
            throw;
        }
    }

    private CompiledGrammar Build(StructuredOutputsParams c)
    {
        try
        {
            var options = new JsonGrammarOptions
            {
                AnyWhitespace = !c.DisableAnyWhitespace,
                WhitespacePattern = c.WhitespacePattern,
                DisableAdditionalProperties = c.DisableAdditionalProperties,
            };
            Grammar grammar = c switch
            {
                { Json: { } schema } => JsonSchemaGrammar.Compile(ParseSchema(schema), options),
                { JsonObject: true } => JsonSchemaGrammar.AnyJsonObject(options),
                { Regex: { } regex } => RegexGrammar.Compile(regex),
                { Choice: { } choices } => new GrammarBuilder().Build(GrammarExpr.Choice(choices.Select(GrammarExpr.Literal))),
                // vLLM reads a grammar with no '::=' as Lark's notation and converts it.
                { Grammar: { } text } => LarkGrammar.IsLikelyLark(text) ? LarkGrammar.Parse(text) : GbnfGrammar.Parse(text),
                { StructuralTag: { } tag } => StructuralTagGrammar.Compile(ParseSchema(tag), options),
                _ => throw new EngineRequestException("No structured outputs constraint is set.", "structured_outputs"),
            };
            var compiled = new CompiledGrammar(GrammarAutomaton.Compile(grammar), _vocabulary.Value);
            compiled.Warm();
            return compiled;
        }
        catch (GrammarException e)
        {
            throw new EngineRequestException(e.Message, "structured_outputs");
        }
    }

    private static JsonNode ParseSchema(string schema)
    {
        try
        {
            return JsonNode.Parse(schema) ?? throw new EngineRequestException("The JSON schema is null.", "structured_outputs");
        }
        catch (JsonException e)
        {
            throw new EngineRequestException($"The JSON schema is not valid JSON: {e.Message}", "structured_outputs");
        }
    }

    private static string Key(StructuredOutputsParams c) => c switch
    {
        { Json: { } schema } => $"json\0{c.DisableAnyWhitespace}\0{c.WhitespacePattern}\0{c.DisableAdditionalProperties}\0{schema}",
        { JsonObject: true } => $"object\0{c.DisableAnyWhitespace}\0{c.WhitespacePattern}\0{c.DisableAdditionalProperties}",
        { Regex: { } regex } => $"regex\0{regex}",
        { Choice: { } choices } => "choice\0" + string.Join("\0", choices.Select(s => s.Length + ":" + s)),
        { Grammar: { } gbnf } => $"gbnf\0{gbnf}",
        { StructuralTag: { } tag } => $"tag\0{c.DisableAnyWhitespace}\0{c.WhitespacePattern}\0{c.DisableAdditionalProperties}\0{tag}",
        _ => "",
    };
}
