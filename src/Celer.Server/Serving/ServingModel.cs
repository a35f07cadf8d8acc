using Celer.ChatTemplates;
using Celer.Engine;
using Celer.Engine.Execution;
using Celer.Models.Config;
using Celer.Server.Media;
using Celer.Tokenization;

namespace Celer.Server.Serving;

/// <summary>
/// The served model as the endpoints see it: its names, tokenizer, default chat template (parsed
/// once), sampling defaults and limits. One per served model (<see cref="ServedModels"/>).
/// </summary>
internal sealed class ServingModel
{
    private readonly ChatTemplate? _defaultChatTemplate;
    private readonly bool _trustRequestChatTemplate;
    private readonly ChatTemplateContentFormat? _contentFormat;
    private readonly bool _interleaveStrings;

    public ServingModel(LoadedModel model, ServerOptions options)
    {
        Engine = model.Engine;
        // Token-id-only checkpoints can run offline, but the OpenAI API speaks text.
        Tokenizer = model.Tokenizer ?? throw new ArgumentException($"The model at {model.ModelPath} has no tokenizer.json; the server needs one.", nameof(model));
        TokenizerConfig = model.TokenizerConfig;
        MaxModelLen = model.MaxModelLen;
        VocabSize = model.Engine.VocabSize;
        MaxLogprobs = options.MaxLogprobs;
        ServedModelNames = options.ServedModelNames is { Count: > 0 } names ? names : [model.ModelName];
        Root = model.ModelName;
        Defaults = options.GenerationConfig == "vllm" ? GenerationDefaults.None : GenerationDefaults.From(model.GenerationConfig);
        Created = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        SpecialTokenTexts = SpecialTokenTextsOf(Tokenizer);

        // --chat-template overrides the tokenizer's; a broken template fails at startup, not per request.
        var source = options.ChatTemplate ?? model.ChatTemplate;
        _defaultChatTemplate = source is null ? null : ChatTemplate.Parse(source);
        _trustRequestChatTemplate = options.TrustRequestChatTemplate;
        ScoreTemplate = options.ChatTemplate is null ? null : _defaultChatTemplate;

        _contentFormat = options.ChatTemplateContentFormat;
        _interleaveStrings = options.InterleaveMmStrings;
        ImageTokenId = model.ImageTokenId;
        FeaturesPerImage = model.ModelConfig.Vision?.FeaturesPerImage ?? 1;
        if (model.ImageTokenId is { } imageToken)
        {
            // The template writes the token's text (LLaVA's "<image>"), which must tokenize back to the token itself.
            ImagePlaceholder = Tokenizer.IdToToken(imageToken) is { Length: > 0 } text && Tokenizer.TokenToId(text) == imageToken
                ? text
                : throw new ArgumentException($"The image token id {imageToken} of the model at {model.ModelPath} is not a token of its own text in tokenizer.json.", nameof(model));
        }
        Images = new ImageLoader(options.Media);
    }

    /// <summary>The text of every special token of the tokenizer (what <see cref="SpecialTokenTexts"/> holds).</summary>
    internal static string[] SpecialTokenTextsOf(Tokenizer tokenizer) =>
        Enumerable.Range(0, tokenizer.VocabSize)
            .Where(tokenizer.IsSpecialToken)
            .Select(id => tokenizer.IdToToken(id))
            .OfType<string>()
            .Where(text => text.Length > 0)
            .ToArray();

    public AsyncLlmEngine Engine { get; }

    /// <summary>
    /// A pooling model's classifier head (<c>…ForSequenceClassification</c>): what <c>/classify</c> reads and what makes
    /// <c>/score</c> and <c>/rerank</c> cross-encoder scoring; null for an embedding model and for a generative model.
    /// </summary>
    public ClassifierConfig? Classifier => Engine.Pooler?.Classifier;

    /// <summary>
    /// The score template of an LLM reranker: what <c>--chat-template</c> gave, rendered for each pair of <c>/score</c>
    /// and <c>/rerank</c> with the messages [{role: query}, {role: document}], as vLLM renders it. Only a template given
    /// at startup is one (vLLM's rule: the tokenizer's own chat template is the base LLM's, made for chat).
    /// </summary>
    public ChatTemplate? ScoreTemplate { get; }

    /// <summary>Whether the model embeds token types (BERT's 2), so a pair's type ids are sent with its tokens.</summary>
    public bool TakesTokenTypes => Engine.Pooler?.TokenTypes > 1;

    /// <summary>A vision-language model's image placeholder token; null: the model takes text only.</summary>
    public int? ImageTokenId { get; }

    /// <summary>The placeholders each image becomes in the prompt the model reads (1 for a text-only model).</summary>
    public int FeaturesPerImage { get; }

    /// <summary>The text of <see cref="ImageTokenId"/>, what the chat template writes for each image.</summary>
    public string? ImagePlaceholder { get; }

    /// <summary>Fetches and decodes a chat request's image parts.</summary>
    public ImageLoader Images { get; }

    /// <summary>How chat messages reach this model's template; <paramref name="loadsImages"/>: whether the endpoint takes image parts.</summary>
    public ChatContentRules ContentRules(bool loadsImages) => new()
    {
        Format = _contentFormat,
        ImagePlaceholder = ImagePlaceholder,
        InterleaveStrings = _interleaveStrings,
        ImageLimit = Images.Options.ImageLimitPerPrompt,
        ImagesRefused = loadsImages ? null : "Image content parts are taken by /v1/chat/completions only.",
    };

    /// <summary>The text of every special token of the tokenizer, which chat messages may not contain.</summary>
    public IReadOnlyList<string> SpecialTokenTexts { get; }
    public Tokenizer Tokenizer { get; }
    public TokenizerConfig TokenizerConfig { get; }
    public int MaxModelLen { get; }
    public int VocabSize { get; }
    public int MaxLogprobs { get; }
    public GenerationDefaults Defaults { get; }

    /// <summary>Names clients may use in <c>model</c>; the first is reported in responses (vLLM's rule).</summary>
    public IReadOnlyList<string> ServedModelNames { get; }

    /// <summary>The model path or id it was loaded from (<c>root</c> in <c>/v1/models</c>).</summary>
    public string Root { get; }

    public long Created { get; }

    /// <summary>The name responses report, whichever of the served names the request used (the endpoints matched it).</summary>
    public string PrimaryName => ServedModelNames[0];

    /// <summary>
    /// The template for a request: the client's own (parsed under the sandbox limits) when the server trusts request
    /// templates (--trust-request-chat-template), else the model's; a refused template is a 400, as in vLLM.
    /// </summary>
    public ChatTemplate GetChatTemplate(string? requestTemplate)
    {
        if (requestTemplate is not null)
        {
            if (!_trustRequestChatTemplate)
            {
                throw OpenAIException.BadRequest(
                    "Chat template is passed with request, but --trust-request-chat-template is not set. Refused request with untrusted chat template.",
                    "chat_template");
            }

            return ChatTemplate.Parse(requestTemplate);
        }

        return _defaultChatTemplate ?? throw OpenAIException.BadRequest(
            "The model has no chat template and the request gives none: as of transformers v4.44 a default chat template is no longer allowed, so pass `chat_template` or start the server with --chat-template.",
            "chat_template");
    }
}
